"""Records: the record file of one (task, tag) in ``<run_dir>/teacher/``, the settings that made it (its
fingerprint, checked through run_record), and one scored record per generated sample."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from cotbridge.answers.score import score_output
from cotbridge.inference.records import TeacherRecord
from cotbridge.jsonl import read_json, write_json
from cotbridge.record_file import RecordFile
from cotbridge.run_record import refuse_if_changed
from cotbridge.tasks.base import answer_choices, choice_letters
from cotbridge.teach.config import FINGERPRINT_KEYS
from cotbridge.teach.generate import Generated
from cotbridge.teach.plan import Owed, Plan, record_key

log = logging.getLogger(__name__)
COMPANIONS = (".jsonl", ".summary.json", ".fingerprint.json", ".config.yaml")


def record_files(records: Path) -> list[Path]:
    """A teacher-records file and its companions (summary, fingerprint, settings): what redoing it replaces."""
    stem = records.name.removesuffix(".jsonl")
    return [records.with_name(stem + suffix) for suffix in COMPANIONS]


class TeacherRecords:
    def __init__(self, folder: Path, plan: Plan, force_new: bool = False):
        self.folder, self.plan, self.stem = folder, plan, plan.stem
        if force_new:
            self.set_aside()
        self.file = RecordFile(folder / f"{self.stem}.jsonl")
        self.check_fingerprint(claim=False)  # records made with other settings are refused before anything runs

    @property
    def path(self) -> Path:
        return self.file.path

    def __len__(self) -> int:
        return len(self.file)

    def keys(self) -> Any:
        return self.file.records.keys()

    def values(self) -> list[dict[str, Any]]:
        return list(self.file.records.values())

    def owed(self) -> Owed:
        """The plan's questions with the sample indices that have no record yet, in the plan's order."""
        done, samples = self.file.records, self.plan.cfg.samples
        todo = [(ex, [j for j in range(samples) if record_key(ex, j) not in done]) for ex in self.plan.examples]
        return [(ex, need) for ex, need in todo if need]

    def spent(self) -> float:
        """What the records on file cost (USD; 0 for free or unpriced teachers)."""
        return sum(r.get("cost_usd") or 0.0 for r in self.file.records.values())

    def fingerprint(self) -> dict[str, Any]:
        fp = self.plan.cfg.model_dump(mode="json", include=set(FINGERPRINT_KEYS))
        fp["temperature"] = self.plan.temperature
        return fp

    def check_fingerprint(self, claim: bool = True) -> None:
        """Refuse to add records made with other settings to this record file (naming what changed), or to add to
        records whose settings are not on record (a lost fingerprint file: another teacher's records would mix in
        silently). ``claim``: an empty record file is claimed for these settings at once, before any record can be
        written (a live run claims it with its first records, so a teacher that cannot start writes nothing)."""
        path = self.folder / f"{self.stem}.fingerprint.json"
        if not len(self.file):
            if claim:
                self.claim()
            return
        made_with = "made with other settings" if path.exists() else "whose settings are not on record"
        refuse_if_changed(
            read_json(path) if path.exists() else None,
            self.fingerprint(),
            holder=f"{self.file.path} holds {len(self.file)} records {made_with}",
            remedy="rerun with --force-new to keep them aside and start over, or use another --run-dir",
        )

    def claim(self) -> None:
        """An empty record file is claimed for these settings (its fingerprint written) before its first records."""
        if not len(self.file):
            write_json(self.folder / f"{self.stem}.fingerprint.json", self.fingerprint())

    def set_aside(self) -> None:
        """``--force-new``: move this record file and its companions to ``<stem>.replaced-<time>.*`` (nothing lost)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in COMPANIONS:
            old = self.folder / f"{self.stem}{suffix}"
            if old.exists():
                new = self.folder / f"{self.stem}.replaced-{stamp}{suffix}"
                old.rename(new)
                log.warning("--force-new: kept %s as %s", old.name, new.name)

    def add(self, generated: Generated, teacher: dict[str, Any]) -> list[dict[str, Any]]:
        """Score each generated sample against its gold answer and append the records whole (fsynced)."""
        new = [self.make(ex, j, s, teacher).to_dict() for ex, j, s in generated]
        self.claim()  # checked when the file was opened; only an empty one is claimed, not every chunk re-read
        self.file.append(new)
        return new

    def make(self, ex: Any, sample: int, s: Any, teacher: dict[str, Any]) -> TeacherRecord:
        plan, task = self.plan, self.plan.task
        v = score_output(
            s.final.text,
            ex.golds,
            task.answer_type,
            letters=choice_letters(task, ex),
            choices=answer_choices(task, ex),
            pipeline=plan.pipeline,
            finish_reason=s.output.finish_reason,
        )
        return TeacherRecord.from_sample(
            s,
            v,
            key=record_key(ex, sample),
            task=task.name,
            split=plan.cfg.split,
            example_id=ex.id,
            sample=sample,
            question=ex.question,
            gold=ex.answer,
            mode=plan.cfg.mode,
            temperature=plan.temperature,
            teacher=teacher,
        )
