"""Score recorded model outputs (e.g. released teacher generations) with a task's extraction rules.

With ``--id-field`` each record is matched to the question of the task's split that has its id (through
``--id-template``, e.g. ``test-{}`` for GSM8K's ``test-17``), never by position; where the record carries its
question too, it must be that question. The scored files go to an output folder held with the folder lock, and
never onto the predictions file itself."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cotbridge.answers.score import score_output
from cotbridge.errors import DataError, UserError
from cotbridge.evaluation.prediction_ids import check_id_template, match_ids
from cotbridge.evaluation.scoring import aggregate
from cotbridge.fileio import write_text
from cotbridge.folder_lock import LOCK_NAME, folder_lock
from cotbridge.jsonl import get_field, read_json, read_jsonl, write_json, write_jsonl
from cotbridge.reporting.tables import markdown_table
from cotbridge.tasks import get_task
from cotbridge.tasks.base import Example, answer_choices

log = logging.getLogger(__name__)


# A recorded verdict: true/false, or 1/0 as a number or text (released outputs score a generation 1.0 / 0.0); any
# other value would count as right under bool() ("0", "no", a list).
VERDICT_TEXT = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "1.0": True,
    "0.0": False,
    "yes": True,
    "no": False,
}


def verdict_value(value: Any, field: str, path: Path, line: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in VERDICT_TEXT:
        return VERDICT_TEXT[value.strip().lower()]
    raise DataError(path, f"--reference-field {field}: expected true/false or 1/0, got {value!r}", line)


def score_predictions(
    task_name: str,
    path: str | Path,
    text_field: str,
    output: str | Path,
    *,
    gold_field: str | None = None,
    id_field: str | None = None,
    id_template: str = "{}",
    question_field: str | None = None,
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
    check_id_template(id_template)
    task = get_task(task_name)
    out_dir = Path(output)
    refuse_writing_onto(Path(path), out_dir, task.name)
    examples = task.load(split, data_dir) if id_field else []
    rows = list(enumerate(read_jsonl(path), 1))
    if not rows:
        raise DataError(path, "no records")
    matched: list[Example | None] = (
        match_ids(rows, examples, id_field, id_template, question_field, path, task.name, split)
        if id_field
        else [None] * len(rows)
    )
    with folder_lock(out_dir, "--output"):
        refuse_model_evaluation(out_dir)
        records, disagreements = [], []
        for (line, rec), example in zip(rows, matched):
            text = get_field(rec, text_field, path=path, line=line)
            if text is not None and not isinstance(text, str):
                raise DataError(path, f"field {text_field!r} is a {type(text).__name__}, expected text", line)
            if example is None:
                gold = get_field(rec, gold_field or "", path=path, line=line)
                if gold is None:
                    raise DataError(path, f"field {gold_field!r} is null", line)
                rec_id = rec.get("id", line)
                example = recorded_example(str(rec_id), rec.get("question") or "", str(gold))
            else:
                rec_id = example.id
            golds = example.golds
            v = score_output(
                text,
                golds,
                task.answer_type,
                letters=task.choice_letters,
                pipeline=pipeline,
                choices=answer_choices(task, example),
            )
            out = {
                "line": line,
                "id": rec_id,
                "gold": golds[0],
                "output": text,
                "samples": [v.to_dict()],
                **v.to_dict(),
            }
            if compare_checker:
                other = score_output(text, golds, compare_checker, letters=task.choice_letters, pipeline=pipeline)
                out["checker_correct"], out["checker_prediction"] = other.correct, other.prediction
            if reference_field:
                ref = verdict_value(get_field(rec, reference_field, path=path, line=line), reference_field, path, line)
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
        metrics = aggregate(task, records, 1)
        metrics["no_output"] = sum(r["output"] is None for r in records)
        if reference_field:
            metrics["reference_accuracy"] = sum(r["reference_correct"] for r in records) / len(records)
            metrics["agreement"] = 1 - len(disagreements) / len(records)
        if compare_checker:
            metrics["checker"] = compare_checker
            metrics["checker_table"] = checker_table(records)
        write_jsonl(out_dir / f"{task.name}.jsonl", records)
        summary = {
            "task": task.name,
            "task_version": task.version,
            "predictions": str(path),
            "text_field": text_field,
            "gold_field": gold_field,
            "id_field": id_field,
            "id_template": id_template if id_field else None,
            "split": split if id_field else None,
            "pipeline": pipeline,
            "results": {task.name: metrics},
            "disagreements": disagreements,
        }
        write_json(out_dir / "results.json", summary)
        write_text(
            out_dir / "results.md", markdown_table({task.name: metrics}, title=f"{Path(path).name} [{text_field}]")
        )
        return summary


def written_files(out_dir: Path, task_name: str) -> list[Path]:
    """Every file a scoring into ``out_dir`` writes (or truncates: the lock file), temporary files included."""
    names = [f"{task_name}.jsonl", "results.json", "results.md"]
    return [out_dir / n for n in names] + [out_dir / f"{n}.tmp" for n in names] + [out_dir / LOCK_NAME]


def same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def refuse_writing_onto(predictions: Path, out_dir: Path, task_name: str) -> None:
    """Scoring a model evaluation's ``<task>.jsonl`` into its own folder used to replace the predictions with the
    scores: refuse before anything is read or written."""
    for target in written_files(out_dir, task_name):
        if same_file(predictions, target):
            raise UserError(
                f"--predictions {predictions} is the file this scoring would write ({target}); choose another "
                f"--output (the predictions would be overwritten)"
            )


def refuse_model_evaluation(out_dir: Path) -> None:
    """A folder written by ``cotbridge eval --model`` keeps its results: scoring there would replace them."""
    marker, results = out_dir / "evaluation.json", out_dir / "results.json"
    if marker.exists() or (results.is_file() and "predictions" not in (read_json(results) or {})):
        raise UserError(
            f"{out_dir} holds a model evaluation (results.json of `cotbridge eval --model`) that scoring would "
            "replace; choose another --output"
        )


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
