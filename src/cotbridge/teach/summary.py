"""Summary: what a teach run's record file holds (accuracy, questions with a correct sample, tokens, cost, cache
use), written beside it as ``<stem>.summary.json``."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from cotbridge.inference.records import teacher_record_skipped
from cotbridge.jsonl import write_json
from cotbridge.teach.plan import Plan

log = logging.getLogger(__name__)


def summarize(
    plan: Plan, records: list[dict[str, Any]], teacher: dict[str, Any], backend: Any, stopped: str | None, path: Path
) -> dict[str, Any]:
    by_q: dict[str, bool] = {}
    for r in records:
        by_q[r["example_id"]] = by_q.get(r["example_id"], False) or r["correct"]
    summary = {
        "task": plan.task.name,
        "task_version": plan.task.version,
        "split": plan.cfg.split,
        "teacher": teacher,
        "records": len(records),
        "expected_records": len(plan.examples) * plan.cfg.samples,
        "accuracy": sum(r["correct"] for r in records) / max(1, len(records)),
        "questions": len(by_q),
        "questions_with_a_correct_sample": sum(by_q.values()),
        "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in records),
        "completion_tokens": sum(r["usage"]["completion_tokens"] for r in records),
        "cost_usd": round(sum(r.get("cost_usd") or 0.0 for r in records), 6),
        "cache": {"hits": getattr(backend, "hits", 0), "calls": getattr(backend, "misses", 0)},
        "stopped": stopped,
    }
    skipped = [(r, teacher_record_skipped(r)) for r in records]
    skipped = [(r, why) for r, why in skipped if why]
    if skipped:
        # Recorded (a rerun does not ask again), counted wrong, never curated into training data.
        summary["skipped"] = {
            "count": len(skipped),
            "questions": len({r["example_id"] for r, _ in skipped}),
            "reason": skipped[0][1],
            "first_ids": list(dict.fromkeys(r["example_id"] for r, _ in skipped))[:5],
        }
        log.warning(
            "%s: %d of %d records hold no sample: the prompt does not fit the teacher's context window, e.g. %s "
            "(question %s); they count as wrong and curation never trains on them",
            plan.task.name,
            len(skipped),
            len(records),
            skipped[0][1],
            skipped[0][0]["example_id"],
        )
    write_json(path, summary)
    return summary


def say_interrupted(records: int, path: Path, new: int, spent: float) -> None:
    log.warning(
        "stopped: %d records in %s (%d new this run, %.4f USD spent this run); the same command resumes: %s",
        records,
        path,
        new,
        spent,
        resume_command(),
    )


def resume_command() -> str:
    """The command line that started this process, to paste again (``cotbridge teach ...``)."""
    args = sys.argv[1:]
    return "cotbridge " + shlex.join(args) if args else "(rerun the same call)"
