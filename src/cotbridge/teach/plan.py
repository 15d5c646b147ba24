"""Plan: the questions a teach run covers, which (question, sample) pairs it still owes, and the requests that ask
for them (stage 1: the rationale; stage 2, in two-stage modes: the answer after it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cotbridge.backends.base import Request
from cotbridge.errors import UserError
from cotbridge.inference.two_stage import sampling_temperature
from cotbridge.prompts.modes import (
    PROMPT_MODES,
    PromptContext,
    PromptMode,
    answer_request,
    first_request,
    load_few_shot,
)
from cotbridge.tasks import Example, parse_task_spec
from cotbridge.tasks.base import Task
from cotbridge.teach.config import TEACH_MODES, TeachConfig

AnswerBuilder = Callable[[Example, Request, str], Request]  # (example, stage-1 request, rationale) -> answer request
Owed = list[tuple[Example, list[int]]]  # questions with the sample indices still missing


def record_key(ex: Example, sample: int) -> str:
    return f"{ex.id}#{sample}"


@dataclass
class Plan:
    cfg: TeachConfig
    task: Task
    examples: list[Example]
    mode: PromptMode
    ctx: PromptContext
    temperature: float
    pipeline: str  # answer extraction for the records' correctness
    custom_answer: AnswerBuilder | None = None
    stem: str = field(init=False)  # the record file's name without suffix: <task> or <task>.<tag>

    def __post_init__(self) -> None:
        self.stem = f"{self.task.name}.{self.cfg.tag}" if self.cfg.tag else self.task.name

    @classmethod
    def build(
        cls, cfg: TeachConfig, examples: list[Example] | None = None, answer: AnswerBuilder | None = None
    ) -> Plan:
        """``examples``: the questions to teach instead of the task split's (e.g. with trimmed contexts);
        ``answer(example, first_request, rationale)``: how stage 2 asks for the answer instead of the prompt
        mode's own (LM-guided CoT asks exactly as its evaluation does)."""
        if cfg.mode not in TEACH_MODES:
            raise UserError(f"teach mode {cfg.mode!r} is not one of {', '.join(TEACH_MODES)}")
        task, params = parse_task_spec(cfg.task)
        if examples is None:
            examples = task.load(cfg.split, cfg.data_dir, **params)
            examples = examples[: cfg.limit] if cfg.limit else examples
        mode = PROMPT_MODES.get(cfg.mode)
        few_shot = (
            load_few_shot(cfg.few_shot_prompts, task.name) if mode.needs_few_shot and cfg.few_shot_prompts else None
        )
        return cls(
            cfg,
            task,
            examples,
            mode,
            PromptContext(task, few_shot=few_shot, generic_trigger=cfg.generic_trigger),
            sampling_temperature(cfg.temperature, cfg.samples),
            cfg.pipeline or ("answer_stage" if mode.second else "default"),
            answer,
        )

    def first_request(self, ex: Example, samples: list[int]) -> Request:
        cfg = self.cfg
        return first_request(
            ex,
            self.mode,
            self.ctx,
            n=len(samples),
            first_sample=samples[0],
            temperature=self.temperature,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
            chat=cfg.chat,
        )

    def answer_request(self, ex: Example, first: Request, rationale: str) -> Request:
        if self.custom_answer is not None:
            return self.custom_answer(ex, first, rationale)
        return answer_request(
            ex, first, rationale, self.mode, self.ctx, max_tokens=self.cfg.answer_max_tokens, seed=self.cfg.seed
        )
