"""Transfer evaluation: every tuned student (and the untuned one) on every task -> an accuracy matrix.

Rows are what a student was tuned on, columns what it is tested on; the diagonal (row task = column
task) is in-domain, the rest out-of-domain. All rows are tested on the *same* questions per column,
and no test question is one any student trained on: a teacher that only has outputs for the test
split teaches from part of it, and that part is removed from every column before the first
``limit`` questions are taken.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cotbridge.backends.replay import normalize_question
from cotbridge.jsonl import read_json
from cotbridge.recipes.instruct.config import InstructConfig, RowSpec
from cotbridge.tasks import get_task, parse_task_spec

log = logging.getLogger(__name__)
BASE = "base"


def select_test_sets(
    tasks: list[str], split: str, limit: int | None, data_dir: str | None, trained: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per column task: the examples to test on and how many were excluded as trained-on.

    ``trained`` are training examples (with task, example_id and the question in their provenance);
    a test question is excluded when its (task, id) or its normalised text was trained on anywhere.
    """
    trained_ids: set[tuple[str, str]] = set()
    trained_text: set[str] = set()
    for ex in trained:
        trained_ids.add((str(ex.get("task")), str(ex.get("example_id"))))
        if ex.get("question"):
            trained_text.add(normalize_question(ex["question"]))
    out = {}
    for spec in tasks:
        task, params = parse_task_spec(spec)
        examples = task.load(split, data_dir, **params)
        clean = [
            e
            for e in examples
            if (task.name, e.id) not in trained_ids and normalize_question(e.question) not in trained_text
        ]
        chosen = clean[:limit] if limit else clean
        out[task.name] = {
            "task": task,
            "examples": chosen,
            "split_size": len(examples),
            "excluded_trained": len(examples) - len(clean),
            "ids": [e.id for e in chosen],
        }
    return out


def relation_to_student(families: list[str], student_family: str | None) -> str:
    """same-family: every teacher shares the student's family; cross-family: none does; mixed otherwise."""
    if student_family is None:
        return "unknown"
    same = [f == student_family for f in families]
    return "same-family" if all(same) else "cross-family" if not any(same) else "mixed"


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def build_matrix(
    rows: list[dict[str, Any]], columns: list[str], cells: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The in-domain x out-of-domain matrix from per-cell metrics.

    ``rows``: {name, tuned_on (None for the base row), teachers, families, relation, demonstrations};
    ``cells[row][column]``: metrics with accuracy, accuracy_stderr and n. Each row gets its in-domain
    accuracy, the mean over its out-of-domain columns, and, where a base row exists, differences to it.
    """
    base = cells.get(BASE)
    out_rows = []
    for row in rows:
        name, tuned = row["name"], row.get("tuned_on")
        row_cells = {}
        for col in columns:
            m = cells.get(name, {}).get(col)
            if m is None:
                continue
            b = base.get(col) if base and name != BASE else None
            row_cells[col] = {
                "accuracy": m["accuracy"],
                "stderr": m.get("accuracy_stderr"),
                "n": m["n"],
                "complete": m.get("complete"),
                "correct_format": m.get("correct_format"),
                "in_domain": col == tuned,
                "delta_vs_base": m["accuracy"] - b["accuracy"] if b is not None else None,
            }
        ood = [c["accuracy"] for col, c in row_cells.items() if col != tuned]
        ood_delta = [
            c["delta_vs_base"] for col, c in row_cells.items() if col != tuned and c["delta_vs_base"] is not None
        ]
        ind = row_cells.get(tuned) if tuned else None
        out_rows.append(
            {
                **row,
                "cells": row_cells,
                "in_domain": ind["accuracy"] if ind else None,
                "in_domain_delta": ind["delta_vs_base"] if ind else None,
                "out_of_domain_mean": _mean(ood),
                "out_of_domain_delta": _mean(ood_delta) if ood_delta else None,
            }
        )
    return {"columns": columns, "rows": out_rows}


def family_comparison(matrix: dict[str, Any]) -> dict[str, Any]:
    """Teachers of different families (and same- vs cross-family w.r.t. the student) for the same student.

    ``by_task``: per tuned task, one entry per row (teacher, family, relation, in-domain, OOD mean and
    their differences to the base row); ``by_family`` / ``by_relation``: those differences averaged over
    rows, which is only a fair comparison when every family taught the same tasks (``tasks`` says which);
    ``by_family_on_shared_tasks`` keeps only tasks that teachers of several families taught.
    """
    tuned = [r for r in matrix["rows"] if r.get("tuned_on")]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in tuned:
        by_task.setdefault(r["tuned_on"], []).append(
            {
                "row": r["name"],
                "teachers": r["teachers"],
                "family": "+".join(sorted(set(r["families"]))),
                "relation": r["relation"],
                "demonstrations": r.get("demonstrations"),
                "in_domain": r["in_domain"],
                "in_domain_delta": r["in_domain_delta"],
                "out_of_domain_mean": r["out_of_domain_mean"],
                "out_of_domain_delta": r["out_of_domain_delta"],
            }
        )

    def summarize(key: str, tasks: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for task, entries in tasks.items():
            for e in entries:
                groups.setdefault(e[key], []).append({**e, "task": task})
        return {
            g: {
                "rows": len(es),
                "tasks": sorted({e["task"] for e in es}),
                "in_domain": _mean([e["in_domain"] for e in es]),
                "in_domain_delta": _mean([e["in_domain_delta"] for e in es]),
                "out_of_domain_mean": _mean([e["out_of_domain_mean"] for e in es]),
                "out_of_domain_delta": _mean([e["out_of_domain_delta"] for e in es]),
            }
            for g, es in groups.items()
        }

    # Tasks taught by more than one family: the only place where families meet on equal terms.
    shared = {t: es for t, es in by_task.items() if len({e["family"] for e in es}) > 1}
    return {
        "by_task": by_task,
        "by_family": summarize("family", by_task),
        "by_relation": summarize("relation", by_task),
        "tasks_with_several_families": sorted(shared),
        "by_family_on_shared_tasks": summarize("family", shared),
    }


def test_set_record(test_sets: dict[str, dict[str, Any]], split: str) -> dict[str, dict[str, Any]]:
    """What ``eval/test_sets.json`` keeps of each column's test set: its size, what was excluded, the ids."""
    return {
        name: {
            "split": split,
            "split_size": ts["split_size"],
            "excluded_trained": ts["excluded_trained"],
            "n": len(ts["ids"]),
            "ids": ts["ids"],
        }
        for name, ts in test_sets.items()
    }


def row_meta(cfg: InstructConfig, row: RowSpec | None, run_dir: Path) -> dict[str, Any]:
    """A matrix row's description: what its student was tuned on, by which teachers, and how they relate to it."""
    if row is None:
        return {"name": BASE, "tuned_on": None, "teachers": [], "families": [], "relation": None, "demonstrations": 0}
    families = [cfg.teacher(t).family for t in row.teachers]
    merged = run_dir / "data" / row.label() / "merge.json"  # written with the row's data, before its student
    return {
        "name": row.label(),
        "tuned_on": get_task(row.task.partition(":")[0]).name,
        "teachers": row.teachers,
        "families": families,
        "relation": relation_to_student(families, cfg.student.family),
        "demonstrations": read_json(merged)["demonstrations"],
    }
