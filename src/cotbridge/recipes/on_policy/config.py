"""The on_policy recipe's run config: one task, a student (or the first layers of a model), the teacher rationales
of the optional warm-up, the distillation settings and the evaluation."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from cotbridge.config import TEMPERATURE_MAX, StrictModel
from cotbridge.errors import UserError
from cotbridge.recipes.eval_stage import EvalSpec
from cotbridge.teach import TeacherConfig
from cotbridge.train.config import TrainConfig
from cotbridge.train.on_policy import OnPolicyConfig


class TruncateSpec(StrictModel):
    model: str = "smollm2-135m-instruct"  # whose first layers become the starting student (the teacher, usually)
    gguf_file: str | None = None
    layers: int = Field(default=10, ge=1)  # decoder layers kept (SmolLM2-135M has 30)


class RationaleSpec(StrictModel):
    """The teacher's written rationales, curated: the warm-up's data and the completions of off-policy steps."""

    teacher: TeacherConfig = TeacherConfig()  # who writes them (reference, replay, openai, hf, ...)
    mode: str = "zero_shot_cot"  # the teacher's prompt mode
    samples: int = Field(default=1, ge=1)  # rationales per training question
    # None: 0 for one sample, 0.7 for several
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    filters: list[str] = ["has_output", "correct"]  # curate's filters
    dedupe: bool = False


class OnPolicyRunConfig(StrictModel):
    name: str = "on_policy"
    run_dir: str | None = None  # default runs/<name>
    task: str = "synthetic_coin_flip"
    data_dir: str | None = None
    train_limit: int | None = Field(default=None, ge=1)  # training questions (rationales and distillation prompts)
    format: str = "finetune_cot"  # student format: the warm-up's data, the distillation prompts, the eval mode
    # The starting student (model) and the warm-up's SFT settings.
    student: TrainConfig = TrainConfig()
    truncate: TruncateSpec | None = None  # start from the first layers of a model instead of student.model
    rationales: RationaleSpec | None = RationaleSpec()  # None: no teacher text (on-policy prompts only)
    warmup: bool = True  # Fine-tune-CoT SFT on the curated rationales before distillation
    # The distillation: teacher, lmbda, beta, seq_kd, its own training settings. Its model (the warmed-up or starting
    # student) and output_dir (<run_dir>/students/on_policy) are the recipe's.
    distill: OnPolicyConfig = OnPolicyConfig()
    top_k: int = Field(default=20, ge=1)  # pre-flight: width of the teacher's log-probs that is checked
    eval: EvalSpec = EvalSpec()

    @model_validator(mode="after")
    def _coherent(self) -> OnPolicyRunConfig:
        if self.warmup and self.rationales is None:
            raise UserError("warmup: true trains on teacher rationales; configure rationales, or set warmup: false")
        d = self.distill
        if self.rationales is None and d.lmbda < 1 and not d.seq_kd:
            raise UserError(
                f"distill.lmbda={d.lmbda} trains some steps on the teacher's rationales, and rationales is null: "
                "configure rationales, set distill.lmbda=1, or distill.seq_kd=true"
            )
        if "model" in self.distill.model_fields_set or "output_dir" in self.distill.model_fields_set:
            raise UserError(
                "distill.model / distill.output_dir are set by the recipe (it distils the student it warmed up); "
                "set student.model or truncate instead"
            )
        if self.truncate is not None and "model" in self.student.model_fields_set:
            raise UserError("student.model and truncate both name the starting student; keep one")
        return self

    def directory(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)
