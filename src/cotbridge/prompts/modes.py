"""Prompt modes: how a question becomes model input, how a second stage follows, how to extract.

Formats follow PAPERS.md: Kojima's zero-shot(-CoT) ``Q: …\\nA: …``, Wei's few-shot-CoT exemplars,
and the Fine-tune-CoT student formats ``{question} ###`` → `` {rationale} --> {answer}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cotbridge.backends.base import Request
from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import read_json
from cotbridge.models.student_io import STUDENT_SUFFIX
from cotbridge.registry import Registry
from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.triggers import GENERIC_TRIGGER, answer_trigger

COT_TRIGGER = "Let's think step by step."
STUDENT_STOP = "END"
CHAT_INSTRUCTION = "Answer the question. Think step by step, then finish with 'The answer is ...'."


@dataclass
class PromptContext:
    """What a prompt builder may need beyond the example."""

    task: Task
    few_shot: str | None = None  # exemplar block for few-shot-CoT
    generic_trigger: bool = False  # stage 2 uses "Therefore, the answer is" instead of Kojima's task trigger

    def trigger(self, ex: Example | None = None) -> str:
        if self.generic_trigger:
            return GENERIC_TRIGGER
        letters = ex.meta.get("choice_letters") if ex is not None else None
        return answer_trigger(self.task.answer_type, letters) if letters else self.task.answer_trigger


@dataclass(frozen=True)
class PromptMode:
    name: str
    first: Callable[[Example, PromptContext], str]
    pipeline: str  # extraction pipeline for the final text
    stop: tuple[str, ...] = ()
    max_tokens: int = 128
    # Two-stage modes: (stage-1 prompt, stage-1 output, ctx, example) -> stage-2 prompt.
    second: Callable[[str, str, PromptContext, Example], str] | None = None
    second_max_tokens: int = 32
    chat_ok: bool = True
    description: str = ""
    needs_few_shot: bool = False


PROMPT_MODES: Registry[PromptMode] = Registry("prompt mode")


def question_block(ex: Example) -> str:
    return f"{ex.context}\n\nQuestion: {ex.question}" if ex.context else ex.question


def _qa(ex: Example) -> str:
    return f"Q: {question_block(ex)}\nA:"


def _zero_shot(ex: Example, ctx: PromptContext) -> str:
    # Kojima's Zero-shot baseline: the answer trigger without "Therefore, ".
    trig = ctx.trigger(ex).removeprefix("Therefore, ")
    return f"{_qa(ex)} {trig[0].upper()}{trig[1:]}"


def _cot_stage1(ex: Example, ctx: PromptContext) -> str:
    return f"{_qa(ex)} {COT_TRIGGER}"


def _cot_stage2(prompt: str, rationale: str, ctx: PromptContext, ex: Example) -> str:
    return f"{prompt} {rationale.strip()}\n{ctx.trigger(ex)}"


def _few_shot(ex: Example, ctx: PromptContext) -> str:
    if not ctx.few_shot:
        raise UserError("prompt mode few_shot_cot needs exemplars: pass --few-shot-prompts FILE")
    return f"{ctx.few_shot.rstrip()}\n\n{_qa(ex)}"


def _instruction(ex: Example, ctx: PromptContext) -> str:
    return f"{CHAT_INSTRUCTION}\n\n{question_block(ex)}"


def _student(ex: Example, ctx: PromptContext) -> str:
    return f"{question_block(ex)}{STUDENT_SUFFIX}"


for _mode in (
    PromptMode(
        "zero_shot",
        _zero_shot,
        "answer_stage",
        stop=("\n\n", "\nQ:"),
        max_tokens=32,
        description="Kojima zero-shot: 'Q: … A: The answer is'",
    ),
    PromptMode(
        "zero_shot_cot",
        _cot_stage1,
        "answer_stage",
        stop=("\nQ:",),
        max_tokens=128,
        second=_cot_stage2,
        description="two-stage zero-shot-CoT: rationale, then 'Therefore, the answer is'",
    ),
    PromptMode(
        "zero_shot_cot_single",
        _cot_stage1,
        "lmeval",
        stop=("Q:", "</s>", "<|im_end|>"),
        max_tokens=256,
        description="one-stage zero-shot-CoT as lm-eval's gsm8k_cot_zeroshot: 'The answer is N' or last number",
    ),
    PromptMode(
        "few_shot_cot",
        _few_shot,
        "default",
        stop=("\nQ:", "\n\nQ:"),
        max_tokens=256,
        needs_few_shot=True,
        description="few-shot-CoT with exemplars from a prompts file",
    ),
    PromptMode(
        "chat_cot",
        _instruction,
        "default",
        max_tokens=256,
        description="instruction-tuned student (use with --chat): instruction + question, 'The answer is …'",
    ),
    PromptMode(
        "finetune_cot",
        _student,
        "finetune_cot",
        stop=(STUDENT_STOP,),
        max_tokens=256,
        chat_ok=False,
        description="Fine-tune-CoT student: '{q} ###' -> ' {rationale} --> {answer}'",
    ),
    PromptMode(
        "vanilla",
        _student,
        "finetune_cot",
        stop=(STUDENT_STOP,),
        max_tokens=32,
        chat_ok=False,
        description="vanilla fine-tuned student: '{q} ###' -> ' {answer}'",
    ),
    PromptMode(
        "natural",
        _student,
        "default",
        stop=(STUDENT_STOP,),
        max_tokens=256,
        chat_ok=False,
        description="natural-language student: ' {rationale} Therefore the answer is {answer}'",
    ),
):
    PROMPT_MODES.add(_mode.name, _mode)


ANSWER_STAGE_STOP = ["\n\n", "\nQ:"]


def first_request(
    ex: Example,
    mode: PromptMode,
    ctx: PromptContext,
    *,
    n: int = 1,
    first_sample: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int | None = None,
    stop: list[str] | None = None,
    seed: int = 0,
    chat: bool = False,
) -> Request:
    """The stage-1 request for one question (the rationale in two-stage modes), as text or chat."""
    text = mode.first(ex, ctx)
    meta = {"task": ctx.task.name, "example": ex, "stage": "rationale" if mode.second else "single"}
    common = dict(
        n=n,
        first_sample=first_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        meta=meta,
        max_tokens=max_tokens or mode.max_tokens,
        stop=list(stop if stop is not None else mode.stop),
    )
    if chat:
        return Request(messages=[{"role": "user", "content": text}], **common)
    return Request(prompt=text, **common)


def answer_request(
    ex: Example,
    first: Request,
    rationale: str,
    mode: PromptMode,
    ctx: PromptContext,
    *,
    max_tokens: int | None = None,
    seed: int = 0,
) -> Request:
    """Stage 2 of zero-shot-CoT: the rationale followed by the answer trigger, decoded greedily."""
    assert mode.second is not None
    common = dict(
        n=1,
        temperature=0.0,
        max_tokens=max_tokens or mode.second_max_tokens,
        stop=ANSWER_STAGE_STOP,
        seed=seed,
        meta={"task": ctx.task.name, "example": ex, "stage": "answer", "rationale": rationale},
    )
    if first.messages is not None:
        cont = f"{rationale.strip()}\n{ctx.trigger(ex)}"
        return Request(
            messages=[*first.messages, {"role": "assistant", "content": cont}], continue_final=True, **common
        )
    return Request(prompt=mode.second(first.prompt or "", rationale, ctx, ex), **common)


def load_few_shot(path: str | Path, key: str) -> str:
    """Exemplar block from a Fine-tune-CoT ``few_shot_cot_prompts.json`` ({task: {prompt: str}})."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object keyed by task name")
    if key not in data:
        raise DataError(path, f"no few-shot prompt for {key!r} (has: {', '.join(sorted(data))})")
    entry = data[key]
    prompt = entry.get("prompt") if isinstance(entry, dict) else entry
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(path, f"key {key!r}: expected a non-empty 'prompt' string")
    return prompt
