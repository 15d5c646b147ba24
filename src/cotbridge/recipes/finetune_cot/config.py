"""Fine-tune-CoT's run config: one task, one teacher, one student, and the methods that are the report's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cotbridge.config import TEMPERATURE_MAX, StrictModel
from cotbridge.recipes.eval_stage import EvalSpec
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
    methods: list[MethodSpec] = [MethodSpec(name="finetune_cot", kind="distill")]

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
