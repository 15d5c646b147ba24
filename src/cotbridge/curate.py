"""Curation: filter teacher records (correctness, finish_reason, length, duplicates) with statistics.

Each filter is a named predicate over one record; ``dedupe`` works across records of one question.
Every dropped record is counted under the first filter that dropped it, so the numbers add up.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge.answers.squad import best_over_golds
from cotbridge.answers.thinking import join_thinking
from cotbridge.config import StrictModel
from cotbridge.errors import DataError, UserError
from cotbridge.registry import Registry

log = logging.getLogger(__name__)
RecordFilter = Callable[[dict[str, Any], "CurateSettings"], bool]
FILTERS: Registry[RecordFilter] = Registry("curation filter")


@dataclass
class CurateSettings:
    filters: list[str] = field(default_factory=lambda: ["has_output", "correct"])
    min_rationale_words: int = 1
    max_rationale_words: int = 512
    dedupe: bool = False  # diverse reasoning keeps repeated rationales by default, as the paper did
    min_answer_f1: float = 0.5  # the "answer_f1" filter's threshold
    # Drop records whose question overlaps a test question of any registered task (see decontaminate.py).
    decontaminate: bool = False
    data_dir: str | None = None  # where the test splits are read from
    ngram: int = 13
    fuzzy: float | None = 0.7
    # Reasoning-model records (a ``thinking`` trace beside the final response): what the student learns, and the
    # longest trace kept. A trace that never closed is never trained on.
    rationale: str = "final"  # "final" (the response), "thinking" (the trace) or "both" (<think>trace</think> answer)
    max_thinking_words: int | None = None
    compare_checker: str | None = None  # e.g. "math": report where it and the records' own verdicts disagree


class CurateConfig(StrictModel):
    """``cotbridge curate``'s settings (the command's options, a --config YAML and --set all land here)."""

    records: str | None = None  # teacher records JSONL (RUN_DIR/teacher/TASK.jsonl)
    output: str | None = None  # output folder for train.jsonl and curation.json
    format: str = "finetune_cot"  # the student format
    filters: list[str] = ["has_output", "correct"]  # curation filters, applied in order
    dedupe: bool = False  # drop repeated rationales of one question
    min_answer_f1: float = Field(default=0.5, ge=0, le=1)  # the answer_f1 filter's threshold (span answers, token F1)
    min_rationale_words: int = Field(default=1, ge=0)  # the length filter's bounds
    max_rationale_words: int = Field(default=512, ge=1)
    # Drop records whose question overlaps a test question of any registered task (13-gram, exact or fuzzy); what
    # was dropped and why goes to OUTPUT/decontamination.json
    decontaminate: bool = True
    data_dir: str | None = None  # where the test splits are read from; default $COTBRIDGE_DATA_DIR, else the HF hub
    # For reasoning-model records: what the student learns: final (the response), thinking (the trace) or both
    # (<think>trace</think> then the response); unfinished traces are always dropped
    rationale: str = "final"
    max_thinking_words: int | None = Field(default=None, ge=1)  # drop records whose thinking trace is longer
    # Also check each record's final output with this answer type (math: math-verify) and report where it disagrees
    # with the record's own verdict (curation.json: checker_table)
    compare_checker: str | None = None
    hf_dataset: bool = False  # also save a Hugging Face dataset
    push_to_hub: str | None = None  # push the dataset to this hub repo (token from the environment)

    def settings(self) -> CurateSettings:
        keys = set(CurateSettings.__dataclass_fields__) & set(type(self).model_fields)
        return CurateSettings(**{k: getattr(self, k) for k in keys})


def answer_f1_at_least(rec: dict[str, Any], settings: CurateSettings) -> bool:
    """Graded correctness for span answers (multi-hop QA): the prediction's best token F1 over the gold aliases.

    Exact match keeps too few rationales when the teacher is small; LM-guided CoT's KD stage uses this instead.
    The aliases come from the record's ``golds`` (set by the caller, who has the task's examples), else ``gold``.
    """
    golds = rec.get("golds") or [str(rec.get("gold") or "")]
    return best_over_golds(rec.get("prediction") or "", golds)[1] >= settings.min_answer_f1


FILTERS.add("has_output", lambda r, s: bool(r.get("rationale")))
FILTERS.add("correct", lambda r, s: bool(r.get("correct")))
FILTERS.add("complete", lambda r, s: (r.get("finish_reason") or {}).get("rationale") != "length")
FILTERS.add(
    "length", lambda r, s: s.min_rationale_words <= len(r.get("rationale", "").split()) <= s.max_rationale_words
)
FILTERS.add("answer_f1", answer_f1_at_least)


RATIONALE_SOURCES = ("final", "thinking", "both")


def thinking_problem(rec: dict[str, Any], settings: CurateSettings) -> str | None:
    """Why a reasoning-model record must not be trained on (None: it may)."""
    if rec.get("thinking") is None:
        return "no_thinking" if settings.rationale == "thinking" else None
    if rec.get("thinking_complete") is False:
        return "incomplete_thinking"  # cut short inside its trace: never trained on, whatever is chosen
    if settings.max_thinking_words is not None and len(rec["thinking"].split()) > settings.max_thinking_words:
        return "thinking_length"
    return None


def with_rationale(rec: dict[str, Any], source: str) -> dict[str, Any]:
    """The record with ``rationale`` set to what the student learns (records without a trace are unchanged)."""
    if rec.get("thinking") is None or source == "final":
        return rec
    text = rec["thinking"] if source == "thinking" else join_thinking(rec["thinking"], rec.get("rationale") or "")
    return {**rec, "rationale": text}


def rationale_fingerprint(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def curate(
    records: list[dict[str, Any]], settings: CurateSettings | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kept records, statistics: kept/dropped per reason, per task)."""
    from cotbridge.backends.base import CONTEXT_OVERFLOW
    from cotbridge.inference.records import teacher_record_skipped

    settings = settings or CurateSettings()
    checks = [(name, FILTERS.get(name)) for name in settings.filters]
    kept, dropped = [], Counter()
    seen: set[tuple[str, str]] = set()
    if settings.rationale not in RATIONALE_SOURCES:
        raise UserError(f"rationale must be one of {', '.join(RATIONALE_SOURCES)}, got {settings.rationale!r}")
    for rec in sorted(records, key=lambda r: (r["example_id"], r["sample"])):
        # A record the teacher never generated (its prompt does not fit the teacher's context window) is dropped
        # whatever the filters: its empty rationale is not an example.
        reason = (
            (CONTEXT_OVERFLOW if teacher_record_skipped(rec) else None)
            or thinking_problem(rec, settings)
            or next((name for name, check in checks if not check(rec, settings)), None)
        )
        if reason is None and settings.dedupe:
            fp = (rec["example_id"], rationale_fingerprint(rec.get("rationale", "")))
            reason = "duplicate" if fp in seen else None
            seen.add(fp)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(with_rationale(rec, settings.rationale))
    questions = {r["example_id"] for r in records}
    stats = {
        "records": len(records),
        "kept": len(kept),
        "kept_fraction": len(kept) / max(1, len(records)),
        "dropped": dict(dropped),
        "questions": len(questions),
        "questions_kept": len({r["example_id"] for r in kept}),
        "filters": settings.filters,
        "dedupe": settings.dedupe,
        "rationale": settings.rationale,
    }
    if dropped[CONTEXT_OVERFLOW]:
        log.warning(
            "curation: dropped %d of %d records the teacher never generated (their prompt does not fit its context "
            "window; curation.json: dropped.%s)",
            dropped[CONTEXT_OVERFLOW],
            len(records),
            CONTEXT_OVERFLOW,
        )
    return kept, stats


def decontaminate_records(
    records: list[dict[str, Any]], settings: CurateSettings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records whose question overlaps no test question, and a report of what was dropped and why."""
    from collections import Counter as _Counter

    from cotbridge.decontaminate import build_index, decontaminate

    index = build_index(data_dir=settings.data_dir, n=settings.ngram, fuzzy=settings.fuzzy)
    kept, dropped = decontaminate(records, index)
    summary = {
        "checked": len(records),
        "dropped": len(dropped),
        "by_kind": dict(_Counter(d["matches"][0]["kind"] for d in dropped)),
        "by_test_task": dict(_Counter(d["matches"][0]["task"] for d in dropped)),
        "ngram": settings.ngram,
        "fuzzy": settings.fuzzy,
        "test_tasks": sorted({e[0] for e in index.entries}),
        "exact_only_tasks": sorted(index.exact_only),
        "skipped_tasks": index.skipped,
    }
    if dropped:
        log.warning(
            "decontamination: dropped %d of %d records overlapping test questions (%s); see decontamination.json",
            len(dropped),
            len(records),
            ", ".join(f"{k} {v}" for k, v in summary["by_kind"].items()),
        )
    return kept, {"summary": summary, "dropped": dropped}


def compare_verdicts(records: list[dict[str, Any]], checker: str) -> dict[str, Any]:
    """The teacher records' own verdicts (the task's rules) against ``checker`` (``math``: math-verify) on the same
    final outputs: the four cells, with examples of each disagreement."""
    from cotbridge.answers.score import score_output
    from cotbridge.evaluation.predictions import checker_table

    rows = []
    for r in records:
        text = r.get("answer_output") or r.get("rationale") or ""
        v = score_output(text, [str(r.get("gold") or "")], checker)
        rows.append(
            {
                "id": r.get("key"),
                "gold": r.get("gold"),
                "correct": bool(r.get("correct")),
                "prediction": r.get("prediction"),
                "checker_correct": v.correct,
                "checker_prediction": v.prediction,
            }
        )
    return checker_table(rows)


def curate_vanilla(questions: list[Any], task: str, answer_type: str, out_dir: str | Path) -> Path:
    """Vanilla fine-tuning's data, no teacher: one answer-only example per training question (task Examples), in
    ``out_dir/train.jsonl``, with ``curation.json`` beside it."""
    from cotbridge.jsonl import write_json, write_jsonl
    from cotbridge.prompts.formats import vanilla_examples

    rows = [
        {"question": q.question, "gold": q.answer, "task": task, "example_id": q.id, "sample": 0} for q in questions
    ]
    out = Path(out_dir)
    write_json(out / "curation.json", {"examples": len(rows), "format": "vanilla"})
    write_jsonl(out / "train.jsonl", vanilla_examples(rows, answer_type))
    return out / "train.jsonl"


def curate_file(
    records_path: str | Path,
    out_dir: str | Path,
    fmt: str,
    answer_type: str,
    settings: CurateSettings | None = None,
    hf_dataset: bool = False,
    push_to_hub: str | None = None,
) -> dict[str, Any]:
    """Teacher records -> ``out_dir/train.jsonl`` in a student format, plus ``curation.json`` statistics."""
    from cotbridge.fileio import staged
    from cotbridge.jsonl import read_jsonl, write_json, write_jsonl
    from cotbridge.prompts.formats import FORMATS, to_student_examples

    FORMATS.get(fmt)  # unknown format: fail before reading anything
    records = list(read_jsonl(records_path))
    for lineno, rec in enumerate(records, 1):
        missing = [k for k in ("example_id", "sample") if k not in rec]
        if missing:
            raise DataError(records_path, f"record {lineno} has no {missing[0]!r} field (not a teacher record?)")
    kept, stats = curate(records, settings)
    settings = settings or CurateSettings()
    out = Path(out_dir)
    if settings.compare_checker:
        stats["checker"] = settings.compare_checker
        stats["checker_table"] = compare_verdicts(records, settings.compare_checker)
    if settings.decontaminate and kept:
        kept, report = decontaminate_records(kept, settings)
        stats["decontamination"] = report["summary"]
        write_json(out / "decontamination.json", report)
        stats["kept"] = len(kept)
    if not kept:
        raise UserError(
            f"{records_path}: none of {len(records)} records passed the filters (dropped: "
            f"{', '.join(f'{k} {v}' for k, v in stats['dropped'].items())}); nothing to train on — check the "
            "teacher's answers, or loosen the filters"
        )
    examples = to_student_examples(kept, fmt, answer_type)
    write_jsonl(out / "train.jsonl", examples)
    stats.update({"source": str(records_path), "format": fmt, "examples": len(examples)})
    write_json(out / "curation.json", stats)
    if hf_dataset or push_to_hub:
        from dataclasses import asdict

        from datasets import Dataset

        from cotbridge.reporting.dataset_card import dataset_card, teach_summary_of

        ds = Dataset.from_list(examples)
        card = dataset_card(records, examples, stats, asdict(settings), teach_summary_of(records_path))
        with staged(out) as stage:  # the whole hf_dataset folder or none: a failed save keeps the previous one
            ds.save_to_disk(str(stage / "hf_dataset"))
            card.save(stage / "hf_dataset" / "README.md")
        if push_to_hub:
            push_with_card(ds, card, push_to_hub)
    return stats


def push_with_card(ds: Any, card: Any, repo: str) -> None:
    """The dataset and its card to the hub (the user's HF token from the environment). The card goes first:
    ``Dataset.push_to_hub`` keeps a README already in the repo and adds its own metadata (splits, sizes) to it,
    where a card pushed after would drop that metadata."""
    from huggingface_hub import HfApi

    HfApi().create_repo(repo, repo_type="dataset", exist_ok=True)
    card.push_to_hub(repo, repo_type="dataset")
    ds.push_to_hub(repo)
