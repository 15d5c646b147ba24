"""Result rows: one flat dict per (method, task), the common input of tables and plots.

A *result row*::

    {"method": str, "task": str, "n": int, "accuracy": float, "stderr": float,
     "em"?: float, "em_stderr"?: float, "f1"?: float, "f1_stderr"?: float,
     "degree"?: int, "student"?: str, "student_params"?: int}

``degree`` is the diverse-reasoning degree D (teacher samples per question), ``student_params`` the
student's parameter count. Rates are fractions in [0, 1]; tables and plots show them in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cotbridge.jsonl import read_json

METRIC_COLUMNS = ("accuracy", "em", "f1")
ROW_EXTRAS = ("degree", "student", "student_params")
METRIC_NAMES = {"accuracy": "Accuracy", "em": "Exact match", "f1": "F1"}
Row = dict[str, Any]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def finite_or_none(x: Any) -> float | None:
    """A finite float, or None for missing / NaN (NaN is what an empty task's mean is)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def rows_from_results(results_json: dict[str, Any], method: str, **extra: Any) -> list[Row]:
    """One row per task of a ``results.json`` summary; ``extra`` may set degree, student, student_params."""
    unknown = sorted(set(extra) - set(ROW_EXTRAS))
    if unknown:
        raise TypeError(f"rows_from_results: unknown row field(s) {unknown}; allowed: {list(ROW_EXTRAS)}")
    if not isinstance(results_json, dict) or not isinstance(results_json.get("results"), dict):
        raise ValueError(
            "rows_from_results expects a results.json summary with a 'results' mapping of task -> metrics"
        )
    rows = []
    for task, m in results_json["results"].items():
        row: Row = {
            "method": str(method),
            "task": str(task),
            "n": int(m["n"]),
            "accuracy": finite_or_none(m["accuracy"]),
            "stderr": finite_or_none(m.get("accuracy_stderr")),
        }
        for key in ("em", "f1"):
            if key in m:
                row[key], row[f"{key}_stderr"] = finite_or_none(m[key]), finite_or_none(m.get(f"{key}_stderr"))
        for key in ROW_EXTRAS:
            if extra.get(key) is not None:
                row[key] = str(extra[key]) if key == "student" else int(extra[key])
        rows.append(row)
    return rows


def check_rows(rows: Iterable[Row]) -> list[Row]:
    rows = list(rows)
    if not rows:
        raise ValueError("no result rows: nothing to report")
    for i, r in enumerate(rows):
        missing = [k for k in ("method", "task", "n", "accuracy") if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"result row {i} lacks {missing}: {r!r}")
    return rows


def load_rows(path: str | Path) -> list[Row]:
    """Read back a ``results_table.json`` written by :func:`write_report`."""
    return check_rows(read_json(path))


def format_params(n: float) -> str:
    """135_000_000 -> '135M', 1_700_000_000 -> '1.7B'."""
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


def unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def row_labels(rows: list[Row]) -> list[str]:
    """A label per row: the method, plus D / student for every row of a method that has several rows for one task."""
    suffix_keys: dict[str, list[str]] = {}
    for method in unique(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        keys: list[str] = []
        if len({r["task"] for r in mine}) < len(mine):
            varies = {k: len({r.get(k) for r in mine}) > 1 for k in ROW_EXTRAS}
            keys = [k for k in ROW_EXTRAS if varies[k] and not (k == "student_params" and varies["student"])]
        suffix_keys[method] = keys
    labels = []
    for r in rows:
        parts = [
            f"D={r[k]}" if k == "degree" else format_params(r[k]) if k == "student_params" else str(r[k])
            for k in suffix_keys[r["method"]]
            if r.get(k) is not None
        ]
        labels.append(f"{r['method']} ({', '.join(parts)})" if parts else str(r["method"]))
    seen: set[tuple[str, str]] = set()
    for label, r in zip(labels, rows):
        if (label, r["task"]) in seen:
            raise ValueError(
                f"duplicate result rows for method {label!r} on task {r['task']!r} "
                "(give them distinct method names, degrees or students)"
            )
        seen.add((label, r["task"]))
    return labels
