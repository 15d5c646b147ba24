"""The teach stage: a teacher answers a task split with (diverse) chain-of-thought; one record per (question,
sample) lands in ``<run_dir>/teacher/<task>.jsonl``. Modules in the pipeline's order, data flowing one way:
config -> plan -> budget -> generate (batch) -> records -> summary, driven by run."""

from cotbridge.teach.config import FINGERPRINT_KEYS, TEACH_MODES, TeachConfig, TeacherConfig
from cotbridge.teach.plan import record_key
from cotbridge.teach.run import Teacher, run_teach
from cotbridge.teach.summary import resume_command

__all__ = [
    "FINGERPRINT_KEYS",
    "TEACH_MODES",
    "TeachConfig",
    "TeacherConfig",
    "Teacher",
    "record_key",
    "resume_command",
    "run_teach",
]
