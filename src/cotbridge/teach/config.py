"""What a teach run is told: the teacher, the task split, sampling, limits, and where the records go."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cotbridge.config import StrictModel

# What determines a record: a rerun with other values would mix records of two settings in one file.
# (limit and samples may grow: the records already made stay valid.)
FINGERPRINT_KEYS = (
    "task",
    "split",
    "teacher",
    "mode",
    "temperature",
    "max_tokens",
    "answer_max_tokens",
    "generic_trigger",
    "few_shot_prompts",
    "chat",
    "pipeline",
    "seed",
)
TEACH_MODES = ("zero_shot_cot", "zero_shot_cot_single", "few_shot_cot")


class TeacherConfig(StrictModel):
    backend: str = "reference"
    model: str | None = None
    options: dict[str, Any] = {}  # passed to the backend: base_url, api_key_env, concurrency, path, error_rate, ...


class TeachConfig(StrictModel):
    task: str = "synthetic_arithmetic"
    split: str = "train"
    data_dir: str | None = None
    limit: int | None = Field(default=None, ge=1)  # the first N questions; None: all of them
    teacher: TeacherConfig = TeacherConfig()
    mode: str = "zero_shot_cot"
    samples: int = 1  # D: rationales per question (diverse reasoning when > 1)
    temperature: float | None = None  # None: 0 for one sample, 0.7 for diverse reasoning
    max_tokens: int = 128
    answer_max_tokens: int = 32
    generic_trigger: bool = False
    few_shot_prompts: str | None = None
    chat: bool = False
    pipeline: str | None = None
    seed: int = 0
    run_dir: str = "runs/teach"
    cache: str | None = (
        None  # SQLite file; default $COTBRIDGE_CACHE or ~/.cache/cotbridge/requests.sqlite; "off" disables
    )
    chunk_size: int = 64  # questions per chunk; records are made durable after each chunk
    max_cost: float | None = None  # USD; the run stops cleanly before a chunk that could pass it
    dry_run: bool = False
    tag: str | None = None  # names the record file <task>.<tag>.jsonl, so runs with other settings sit side by side
    batch_export: str | None = None  # write the missing calls as OpenAI Batch API input JSONL, call nothing
    batch_import: str | None = None  # load Batch API output into the cache, then run (two-stage: export again)
    force_new: bool = False  # records made with other settings are kept aside (<stem>.replaced-<time>.jsonl)
