"""What a teach run is told: the teacher, the task split, sampling, limits, and where the records go."""

from __future__ import annotations

from pydantic import Field

from cotbridge.backends.secrets import secret_free
from cotbridge.config import SEED_MAX, TEMPERATURE_MAX, StrictModel

TeacherOptions = secret_free("teacher.options")  # a literal key is refused as the config is read

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
    backend: str = "reference"  # the teacher's backend
    model: str | None = None  # teacher model id or path (replay: the JSONL file of released outputs)
    # passed to the backend: base_url, api_key_env, concurrency, path, error_rate, ...
    options: TeacherOptions = {}


class TeachConfig(StrictModel):
    task: str = "synthetic_arithmetic"  # task name, or name:key=value,... for a parametrised task
    split: str = "train"  # which split the teacher answers
    data_dir: str | None = None  # folder with task data; default $COTBRIDGE_DATA_DIR, else the HF hub
    limit: int | None = Field(default=None, ge=1)  # the first N questions; None: all of them
    teacher: TeacherConfig = TeacherConfig()
    mode: str = "zero_shot_cot"  # prompt mode: zero_shot_cot is two-stage (rationale, then the answer)
    samples: int = Field(default=1, ge=1)  # D: rationales per question (diverse reasoning when > 1)
    # None: 0 for one sample, 0.7 for diverse reasoning
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    max_tokens: int = Field(default=128, ge=1)  # rationale length
    answer_max_tokens: int = Field(default=32, ge=1)  # answer length (two-stage modes)
    generic_trigger: bool = False  # "The answer is" instead of the task's own answer trigger
    few_shot_prompts: str | None = None  # few_shot_cot: a JSON file of exemplars
    chat: bool = False  # wrap prompts in the teacher's chat template (local instruction-tuned teachers)
    pipeline: str | None = None  # answer extraction for the records' correctness (default: the mode's)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    run_dir: str = "runs/teach"  # records go to RUN_DIR/teacher/TASK[.TAG].jsonl
    cache: str | None = (
        None  # SQLite file; default $COTBRIDGE_CACHE or ~/.cache/cotbridge/requests.sqlite; "off" disables
    )
    chunk_size: int = Field(default=64, ge=1)  # questions per chunk; records are made durable after each chunk
    max_cost: float | None = Field(default=None, ge=0)  # USD; the run stops cleanly before a chunk that could pass it
    dry_run: bool = False  # estimate tokens and cost of what is left; call nothing
    tag: str | None = None  # names the record file <task>.<tag>.jsonl, so runs with other settings sit side by side
    batch_export: str | None = None  # write the missing calls as OpenAI Batch API input JSONL, call nothing
    batch_import: str | None = None  # load Batch API output into the cache, then run (two-stage: export again)
    force_new: bool = False  # records made with other settings are kept aside (<stem>.replaced-<time>.jsonl)
