"""Score recorded model outputs (e.g. released teacher generations) with a task's extraction rules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotbridge.answers.score import score_output
from cotbridge.errors import DataError, UserError
from cotbridge.evaluation.scoring import aggregate
from cotbridge.jsonl import get_field, read_jsonl, write_json, write_jsonl
from cotbridge.reporting.tables import markdown_table
from cotbridge.tasks import get_task
from cotbridge.tasks.base import Example, answer_choices

log = logging.getLogger(__name__)


def score_predictions(
    task_name: str,
    path: str | Path,
    text_field: str,
    output: str | Path,
    *,
    gold_field: str | None = None,
    id_field: str | None = None,
    reference_field: str | None = None,
    pipeline: str = "default",
    data_dir: str | None = None,
    split: str = "test",
    compare_checker: str | None = None,
) -> dict[str, Any]:
    """Score every record of ``path``; the gold answer is the record's own field or, via its id, the task's split.

    ``compare_checker``: another answer type (``math``: math-verify) to score every output with as well; the summary
    then holds the regex-vs-verifier table (both right, only one, neither) with examples of each disagreement."""
    if (gold_field is None) == (id_field is None):
        raise UserError("give exactly one of --gold-field or --id-field")
    task = get_task(task_name)
    examples = task.load(split, data_dir) if id_field else []
    records, disagreements = [], []
    for line, rec in enumerate(read_jsonl(path), 1):
        text = get_field(rec, text_field, path=path, line=line)
        if text is not None and not isinstance(text, str):
            raise DataError(path, f"field {text_field!r} is a {type(text).__name__}, expected text", line)
        if id_field:
            raw_id = get_field(rec, id_field, path=path, line=line)
            try:
                example = examples[int(raw_id)]
            except (ValueError, TypeError, IndexError):
                raise DataError(
                    path,
                    f"id {raw_id!r} does not index the {split} split of {task.name} ({len(examples)} examples)",
                    line,
                ) from None
            golds, rec_id, question = example.golds, example.id, example.question
        else:
            gold = get_field(rec, gold_field or "", path=path, line=line)
            if gold is None:
                raise DataError(path, f"field {gold_field!r} is null", line)
            golds, rec_id, question = [str(gold)], rec.get("id", line), rec.get("question") or ""
        choices = answer_choices(task, recorded_example(str(rec_id), question, golds[0]))
        v = score_output(
            text, golds, task.answer_type, letters=task.choice_letters, pipeline=pipeline, choices=choices
        )
        out = {"line": line, "id": rec_id, "gold": golds[0], "output": text, "samples": [v.to_dict()], **v.to_dict()}
        if compare_checker:
            other = score_output(text, golds, compare_checker, letters=task.choice_letters, pipeline=pipeline)
            out["checker_correct"], out["checker_prediction"] = other.correct, other.prediction
        if reference_field:
            ref = bool(get_field(rec, reference_field, path=path, line=line))
            out["reference_correct"] = ref
            if ref != v.correct:
                disagreements.append(
                    {
                        "line": line,
                        "id": rec_id,
                        "gold": golds[0],
                        "prediction": v.prediction,
                        "reference_correct": ref,
                    }
                )
        records.append(out)
    if not records:
        raise DataError(path, "no records")
    metrics = aggregate(task, records, 1)
    metrics["no_output"] = sum(r["output"] is None for r in records)
    if reference_field:
        metrics["reference_accuracy"] = sum(r["reference_correct"] for r in records) / len(records)
        metrics["agreement"] = 1 - len(disagreements) / len(records)
    if compare_checker:
        metrics["checker"] = compare_checker
        metrics["checker_table"] = checker_table(records)
    out_dir = Path(output)
    write_jsonl(out_dir / f"{task.name}.jsonl", records)
    summary = {
        "task": task.name,
        "task_version": task.version,
        "predictions": str(path),
        "text_field": text_field,
        "gold_field": gold_field,
        "id_field": id_field,
        "pipeline": pipeline,
        "results": {task.name: metrics},
        "disagreements": disagreements,
    }
    write_json(out_dir / "results.json", summary)
    (out_dir / "results.md").write_text(
        markdown_table({task.name: metrics}, title=f"{Path(path).name} [{text_field}]"), encoding="utf-8"
    )
    return summary


def recorded_example(rec_id: str, question: Any, gold: str) -> Example:
    """An Example from a recorded question: text, or CommonsenseQA's ``{"stem", "choices": [{label, text}]}``."""
    if isinstance(question, dict):
        listed = question.get("choices") or []
        choices = {str(c.get("label")): str(c.get("text")) for c in listed if isinstance(c, dict)}
        return Example(id=rec_id, question=str(question.get("stem") or ""), answer=gold, meta={"choices": choices})
    return Example(id=rec_id, question=str(question), answer=gold)


def checker_table(records: list[dict[str, Any]], examples: int = 3) -> dict[str, Any]:
    """The task's own rules vs the second checker, record by record: counts and a few examples of each
    disagreement (what each read as the answer)."""
    cells = {"both_correct": [], "only_rules": [], "only_checker": [], "both_wrong": []}
    for r in records:
        key = (
            ("both_correct" if r["checker_correct"] else "only_rules")
            if r["correct"]
            else ("only_checker" if r["checker_correct"] else "both_wrong")
        )
        cells[key].append(r)
    table: dict[str, Any] = {k: len(v) for k, v in cells.items()}
    table["examples"] = {
        k: [
            {"id": r["id"], "gold": r["gold"], "rules": r["prediction"], "checker": r["checker_prediction"]}
            for r in cells[k][:examples]
        ]
        for k in ("only_rules", "only_checker")
    }
    return table
