"""The ``cotbridge instruct`` config: several teachers (each tagged with a model family), one student,
rows (what each student copy is tuned on) and the tasks of the transfer matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from cotbridge.backends.secrets import secret_free
from cotbridge.config import SEED_MAX, StrictModel
from cotbridge.recipes.instruct.released import ReleasedSpec
from cotbridge.train.config import TrainConfig

# a literal key is refused as the config is read, before the run directory records it
TeacherOptions, TaskOptions = secret_free("teachers.options"), secret_free("teachers.tasks.options")


class TeacherTask(StrictModel):
    """How one teacher covers one task; every field defaults to the teacher's or the run's setting."""

    split: str = (
        "train"  # a teacher whose outputs exist only for the test split may teach from it (see eval exclusion)
    )
    limit: int | None = Field(default=None, ge=1)  # first N questions of the split
    options: TaskOptions = {}  # merged over the teacher's backend options
    released: ReleasedSpec | None = None  # published outputs to convert and replay
    pipeline: str | None = None  # answer extraction for the correctness filter (default: 'default')
    max_tokens: int | None = Field(default=None, ge=1)  # rationale length (default: the run's teach_max_tokens)


class TeacherSpec(StrictModel):
    name: str  # unique; names record files and rows
    family: str  # model family, e.g. openai-gpt, google-palm, llama: what same- vs cross-family compares
    backend: str = "openai"
    model: str | None = None
    options: TeacherOptions = {}
    chat: bool = False  # wrap teacher prompts in the model's chat template (local instruction-tuned teachers)
    tasks: dict[str, TeacherTask] | None = None  # None: every task of the run with the defaults

    def task_spec(self, task: str) -> TeacherTask | None:
        if self.tasks is None:
            return TeacherTask()
        return self.tasks.get(task)


class RowSpec(StrictModel):
    """One tuned student: its training task and the teachers whose demonstrations it learns from."""

    name: str | None = None  # default: <task>.<teacher>[+<teacher>...]
    task: str
    teachers: list[str]

    def label(self) -> str:
        return self.name or f"{self.task}.{'+'.join(self.teachers)}"


class MergeSpec(StrictModel):
    filters: list[str] = ["has_output", "correct"]  # curation filters (cotbridge curate) applied per teacher
    dedupe: bool = True  # the same rationale for the same question (from any teacher) is kept once
    # demonstrations per question across teachers (None: all)
    max_per_question: int | None = Field(default=None, ge=1)
    max_demonstrations: int | None = Field(default=None, ge=1)  # per row; equal sizes make teacher comparisons fair
    seed: int = Field(default=0, ge=0, le=SEED_MAX)  # which demonstrations are kept when capping


class StudentConfig(TrainConfig):
    """TrainConfig with the paper's defaults (QLoRA SFT: r 8, alpha 16, dropout 0.1, lr 2e-4, batch 4,
    1 epoch, constant schedule, warmup 0.03) plus 4-bit loading and the student's family."""

    lora_dropout: float = Field(default=0.1, ge=0, lt=1)
    lr: float = Field(default=2e-4, gt=0, le=1)
    epochs: float = Field(default=1, gt=0)
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = (
        4  # the paper's; "auto" sizes it to a GPU (train/batch_fit.py)
    )
    lr_scheduler: str = "constant_with_warmup"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    save_strategy: str = "no"
    quantization: Literal["4bit"] | None = None  # QLoRA; falls back to full-precision LoRA without CUDA + bitsandbytes
    family: str | None = None  # e.g. smollm: teachers of this family are "same-family"


class MatrixEvalSpec(StrictModel):
    tasks: list[str] | None = None  # matrix columns; default: every row task
    split: str = "test"
    # test questions per task, after removing any question a student trained on
    limit: int | None = Field(default=50, ge=1)
    max_tokens: int = Field(default=256, ge=1)
    batch_size: int = Field(default=16, ge=1)
    base: bool = True  # also evaluate the untuned student (row "base")


class InstructConfig(StrictModel):
    name: str = "instruct"
    run_dir: str | None = None  # default runs/<name>
    data_dir: str | None = None
    tasks: list[str] = ["gsm8k", "commonsense_qa"]  # training tasks
    teachers: list[TeacherSpec]
    rows: list[RowSpec] | None = None  # None: one row per (task, teacher covering it)
    template: str = "ranaldi_freitas"  # built-in instruction template name or a YAML file
    teach_mode: str = "zero_shot_cot_single"
    teach_max_tokens: int = Field(default=256, ge=1)
    merge: MergeSpec = MergeSpec()
    student: StudentConfig = StudentConfig()
    eval: MatrixEvalSpec = MatrixEvalSpec()

    @model_validator(mode="after")
    def _check_names(self) -> InstructConfig:
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique, got {names}")
        for t in self.teachers:
            for task in t.tasks or {}:
                if task not in self.tasks:
                    raise ValueError(f"teacher {t.name!r} covers task {task!r}, which is not in tasks {self.tasks}")
        for r in self.rows or []:
            unknown = sorted(set(r.teachers) - set(names))
            if unknown:
                raise ValueError(f"row {r.label()!r} names unknown teacher(s) {unknown} (teachers: {names})")
            if r.task not in self.tasks:
                raise ValueError(f"row {r.label()!r} trains on {r.task!r}, which is not in tasks {self.tasks}")
        labels = [r.label() for r in self.resolved_rows()]
        if len(set(labels)) != len(labels) or "base" in labels:
            raise ValueError(f"row names must be unique and not 'base', got {labels}")
        return self

    def resolved_rows(self) -> list[RowSpec]:
        if self.rows is not None:
            return self.rows
        return [
            RowSpec(task=task, teachers=[t.name])
            for task in self.tasks
            for t in self.teachers
            if t.task_spec(task) is not None
        ]

    def teacher(self, name: str) -> TeacherSpec:
        return next(t for t in self.teachers if t.name == name)

    def matrix_tasks(self) -> list[str]:
        return self.eval.tasks or list(dict.fromkeys(r.task for r in self.resolved_rows()))

    def directory(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)
