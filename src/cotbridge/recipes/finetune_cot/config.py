"""Fine-tune-CoT's run config: one task, one teacher, one student, and the methods that are the report's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from cotbridge.config import TEMPERATURE_MAX, StrictModel
from cotbridge.recipes.eval_stage import EvalSpec
from cotbridge.registry import Registry, unknown_name_message
from cotbridge.teach.config import TeachConfig, TeacherConfig
from cotbridge.train.config import TrainConfig


class MethodSpec(StrictModel):
    name: str
    kind: Literal["prompt", "vanilla", "distill"]
    mode: str = "zero_shot_cot"  # prompt baselines: the prompt mode
    chat: bool = False  # prompt baselines: wrap in the model's chat template
    format: str = "finetune_cot"  # distill: the student format
    samples: int = Field(default=1, ge=1)  # distill: rationales per question (D)
    # distill: None -> 0 for D=1, 0.7 for D>1
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)

    # Checked when the config is read, not at the stage that uses them (after teaching and training)
    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        return known_prompt_mode(mode)

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        from cotbridge.prompts.formats import FORMATS

        return registered(fmt, FORMATS)


def known_prompt_mode(mode: str) -> str:
    from cotbridge.prompts.modes import PROMPT_MODES

    return registered(mode, PROMPT_MODES)


def registered(name: str, registry: Registry[Any]) -> str:
    """``name`` if ``registry`` has it; else a ValueError (pydantic names the config key it came from)."""
    if name not in registry:
        raise ValueError(unknown_name_message(registry.kind, name, registry.names()))
    return name


class CurateSpec(StrictModel):
    filters: list[str] = ["has_output", "correct"]
    dedupe: bool = False


class RunConfig(StrictModel):
    name: str = "run"
    run_dir: str | None = None  # default runs/<name>
    task: str = "synthetic_coin_flip"
    data_dir: str | None = None
    train_limit: int | None = Field(default=None, ge=1)  # training questions taught / trained on
    teacher: TeacherConfig = TeacherConfig()
    teach_mode: str = "zero_shot_cot"
    curate: CurateSpec = CurateSpec()
    student: TrainConfig = TrainConfig()
    eval: EvalSpec = EvalSpec()
    methods: list[MethodSpec] = Field(default=[MethodSpec(name="finetune_cot", kind="distill")], min_length=1)

    @field_validator("teach_mode")
    @classmethod
    def _known_teach_mode(cls, mode: str) -> str:
        return known_prompt_mode(mode)

    @field_validator("methods")
    @classmethod
    def _distinct_method_names(cls, methods: list[MethodSpec]) -> list[MethodSpec]:
        names = [m.name for m in methods]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # each method's outputs live in folders named after it
            raise ValueError(f"{', '.join(twice)} named more than once (a method's name is its folders' name)")
        return methods

    def directory(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)

    def teach_config(self, m: MethodSpec) -> TeachConfig:
        """The ``teach`` job of a distillation method: D rationales per training question, tagged ``D<samples>``."""
        return TeachConfig(
            task=self.task,
            split="train",
            data_dir=self.data_dir,
            limit=self.train_limit,
            teacher=self.teacher,
            mode=self.teach_mode,
            samples=m.samples,
            temperature=m.temperature,
            run_dir=str(self.directory()),
            tag=f"D{m.samples}",
        )
