"""``cotbridge teach``'s job, in the pipeline's order: plan (questions x samples still owed) -> budget (cost
estimate, cap) -> generate (chunks through the cached backend, or the Batch API) -> records -> summary.

Re-running the same command resumes: finished samples are skipped, and calls that were paid for but not yet
recorded come back from the request cache. Records are appended whole and fsynced per chunk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cotbridge.backends.base import Request
from cotbridge.backends.secrets import check_no_literal_secrets
from cotbridge.config import dump_config
from cotbridge.fileio import write_text
from cotbridge.folder_lock import folder_lock
from cotbridge.jsonl import read_json
from cotbridge.tasks import Example
from cotbridge.teach import batch
from cotbridge.teach.budget import Budget
from cotbridge.teach.config import TeachConfig
from cotbridge.teach.generate import open_backend, run_chunk, teacher_info
from cotbridge.teach.plan import AnswerBuilder, Owed, Plan
from cotbridge.teach.records import TeacherRecords
from cotbridge.teach.summary import say_interrupted, summarize

log = logging.getLogger(__name__)


class Teacher:
    """One task's teach run: owns the plan, the budget, the backend and the record file."""

    def __init__(
        self,
        cfg: TeachConfig,
        backend: Any = None,
        progress: bool = True,
        examples: list[Example] | None = None,
        answer_request: AnswerBuilder | None = None,
    ):
        """``examples`` / ``answer_request``: see Plan.build; ``backend``: a ready backend object."""
        check_no_literal_secrets(cfg.teacher.options, "teacher.options")  # before anything is written
        self.cfg, self.progress, self.backend = cfg, progress, backend
        self.plan = Plan.build(cfg, examples, answer_request)
        self.run_dir = Path(cfg.run_dir)
        self.records = TeacherRecords(self.run_dir / "teacher", self.plan, force_new=cfg.force_new)
        self.budget = Budget(self.plan, spent=self.records.spent())
        self.summary_path = self.run_dir / "teacher" / f"{self.plan.stem}.summary.json"

    def open_backend(self) -> Any:
        self.backend = open_backend(self.cfg, self.backend)
        return self.backend

    # -- the Batch API instead of live calls ------------------------------------------------------------
    def pending_requests(self) -> list[tuple[str, Request]]:
        return batch.pending_requests(self.open_backend(), self.plan, self.records.owed())

    def export_batch(self, path: str | Path) -> int:
        return batch.export_batch(self.open_backend(), self.budget.within(self.pending_requests()), path)

    def import_batch(self, path: str | Path) -> int:
        return batch.import_batch(self.open_backend(), self.pending_requests(), path)

    # -- a live run ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with folder_lock(self.run_dir, "--run-dir"):
            before, spent_before = len(self.records), self.budget.spent
            try:
                return self._teach()
            except KeyboardInterrupt:
                # Every record is appended whole, and the calls in flight were cached as they arrived: say what was
                # kept, what it cost and how to go on; the CLI then exits 130.
                new, spent = len(self.records) - before, self.budget.spent - spent_before
                say_interrupted(len(self.records), self.records.path, new, spent)
                raise

    def _teach(self) -> dict[str, Any]:
        todo = self.records.owed()
        if self.cfg.dry_run:
            est = self.budget.estimate(todo)
            log.info("dry run: %s", est)
            return {"dry_run": est, "records": len(self.records)}
        if not todo:
            log.info("%s: all %d records already present; nothing to do", self.plan.task.name, len(self.records))
            # A resumed run that calls nothing leaves the record of the run that did the work as it was.
            if self.summary_path.exists():
                return read_json(self.summary_path)
        else:  # the backend first: a teacher that cannot start (a replay file missing) writes nothing
            self.backend = open_backend(self.cfg, self.backend)
        info = teacher_info(self.cfg, self.backend)
        if todo:
            self._generate(todo, self.backend, info)
        return summarize(self.plan, self.records.values(), info, self.backend, self.budget.stopped, self.summary_path)

    def _generate(self, todo: Owed, backend: Any, info: dict[str, Any]) -> None:
        """The owed samples, chunk by chunk: each chunk's records are appended whole before the next is asked for."""
        # The teach stage's own settings, beside its records: a run directory's config.yaml belongs to the recipe.
        write_text(self.run_dir / "teacher" / f"{self.plan.stem}.config.yaml", dump_config(self.cfg))
        total, name = sum(len(s) for _, s in todo), self.plan.task.name
        bar = tqdm(total=total, desc=f"teach {name}", unit="sample", disable=not self.progress)
        tokens = 0  # completion tokens of this run, all chunks
        try:
            for start in range(0, len(todo), self.cfg.chunk_size):
                chunk = todo[start : start + self.cfg.chunk_size]
                if self.budget.stop_before(chunk):
                    break
                done_before_chunk = bar.n
                generated = run_chunk(backend, self.plan, chunk, on_done=bar.update)  # the bar moves per sample
                new = self.records.add(generated, info)
                self.budget.spent += sum(r.get("cost_usd") or 0.0 for r in new)
                tokens += sum(r["usage"]["completion_tokens"] for r in new)
                bar.update(done_before_chunk + len(new) - bar.n)  # backends that report no progress
                bar.set_postfix(
                    calls=getattr(backend, "misses", len(new)),
                    cache_hits=getattr(backend, "hits", 0),
                    tokens=tokens,
                    cost=f"{self.budget.spent:.4f}",
                )
        finally:  # closed before any error message, so the message is the last line
            bar.close()


def run_teach(cfg: TeachConfig, backend: Any = None, progress: bool = True) -> dict[str, Any]:
    """The teach command: the run directory is locked from before the records are read until the last is written."""
    with folder_lock(cfg.run_dir, "--run-dir"):
        teacher = Teacher(cfg, backend=backend, progress=progress)
        if cfg.batch_export:
            teacher.records.check_fingerprint()
            return {"batch_exported": teacher.export_batch(cfg.batch_export), "path": cfg.batch_export}
        done = {"records_file": str(teacher.records.path)}  # where they are, whatever the tag (not in summary.json)
        if cfg.batch_import:
            teacher.records.check_fingerprint()
            imported = teacher.import_batch(cfg.batch_import)
            return {**teacher.run(), **done, "batch_imported": imported}
        return {**teacher.run(), **done}
