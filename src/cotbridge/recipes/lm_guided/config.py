"""LM-guided CoT's run config: the frozen large model, the small rationale writer, KD, RL, the evaluated rows,
scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cotbridge.backends.secrets import secret_free
from cotbridge.config import SEED_MAX, TEMPERATURE_MAX, StrictModel
from cotbridge.quality.scorers import AUTOMATIC
from cotbridge.recipes.lm_guided.inference import ANSWER_PIPELINE, COT_MODE, ContextSpec
from cotbridge.teach.config import TeachConfig, TeacherConfig
from cotbridge.train.config import TrainConfig
from cotbridge.train.rl import RLConfig
from cotbridge.train.scratch import ScratchSpec

LargeOptions = secret_free("large.options")  # a literal key is refused as the config is read


class LargeSpec(StrictModel):
    backend: str = "hf"
    model: str = "smollm2-135m-instruct"
    options: LargeOptions = {}  # backend options (base_url, api_key_env, concurrency, ...)
    chat: bool = True
    serve: bool = True  # hf only: the evaluation reaches the model through `cotbridge serve` (OpenAI-compatible HTTP)
    batch_size: int = Field(default=16, ge=1)
    rationale_max_tokens: int = Field(default=64, ge=1)
    answer_max_tokens: int = Field(default=24, ge=1)


class WriterSpec(StrictModel):
    model: str | None = None  # a pretrained writer (hub id, folder); None: from scratch (see ``scratch``)
    scratch: ScratchSpec = ScratchSpec()
    max_tokens: int = Field(default=48, ge=1)  # rationale length
    batch_size: int = Field(default=16, ge=1)
    train: TrainConfig = TrainConfig(lora=False, lr=1e-3, epochs=10, save_strategy="no", logging_steps=10)


class KDSpec(StrictModel):
    # training questions per task the large model writes rationales for
    train_limit: int | None = Field(default=100, ge=1)
    samples: int = Field(default=1, ge=1)  # rationales per training question
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    filters: list[str] = ["has_output", "correct"]  # curate's filters; "correct" is exact match
    # instead of exact match, keep answers with at least this F1
    min_f1: float | None = Field(default=None, ge=0, le=1)


class EvalRow(StrictModel):
    name: str
    rationale: Literal["none", "large", "kd", "rl"]
    k: int = Field(default=1, ge=1)  # samples per question; k>1 is self-consistency
    # None: 0 for k=1, 0.7 for self-consistency
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)


PAPER_ROWS = [
    EvalRow(name="standard", rationale="none"),
    EvalRow(name="cot", rationale="large"),
    EvalRow(name="kd", rationale="kd"),
    EvalRow(name="kd_sc", rationale="kd", k=3),
    EvalRow(name="kd_rl", rationale="rl"),
    EvalRow(name="kd_rl_sc", rationale="rl", k=3),
]


class EvalSpec(StrictModel):
    split: str = "test"
    limit: int | None = Field(default=30, ge=1)
    rows: list[EvalRow] = PAPER_ROWS


class ScoreSpec(StrictModel):
    scorers: list[str] = list(AUTOMATIC)  # add "judge" for the eight judge-scored aspects
    options: dict[str, dict[str, Any]] = {}  # scorer -> options; a judge without a backend uses the large model
    judge_limit: int | None = Field(default=5, ge=1)  # rationales per (row, task) sent to the judge; None: all


class LMGuidedConfig(StrictModel):
    name: str = "lm_guided"
    run_dir: str | None = None  # default runs/<name>
    tasks: list[str] = ["hotpotqa", "2wikimultihopqa"]
    data_dir: str | None = None
    context: ContextSpec = ContextSpec(paragraphs="supporting", max_paragraph_words=60)
    large: LargeSpec = LargeSpec()
    writer: WriterSpec = WriterSpec()
    kd: KDSpec = KDSpec()
    rl: RLConfig = RLConfig()
    eval: EvalSpec = EvalSpec()
    score: ScoreSpec = ScoreSpec()
    cache: str | None = None  # request cache file; default <run_dir>/requests.sqlite; "off" disables
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    def directory(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)

    def teach_config(self, task: str) -> TeachConfig:
        """The ``teach`` job for one task's training questions: zero-shot CoT, answered as the evaluation asks."""
        lg, kd = self.large, self.kd
        return TeachConfig(
            task=task,
            split="train",
            data_dir=self.data_dir,
            limit=kd.train_limit,
            teacher=TeacherConfig(backend=lg.backend, model=lg.model),
            mode=COT_MODE,
            samples=kd.samples,
            temperature=kd.temperature,
            max_tokens=lg.rationale_max_tokens,
            answer_max_tokens=lg.answer_max_tokens,
            chat=lg.chat,
            seed=self.seed,
            pipeline=ANSWER_PIPELINE,
            run_dir=str(self.directory()),
            cache="off",  # the large model's client is already cached
        )
