"""Result tables and reports: Markdown/LaTeX tables from results.json-style metrics, and ``write_report``.

A *result row* is a flat dict, one per (method, task)::

    {"method": str, "task": str, "n": int, "accuracy": float, "stderr": float,
     "em"?: float, "em_stderr"?: float, "f1"?: float, "f1_stderr"?: float,
     "degree"?: int, "student"?: str, "student_params"?: int}

``degree`` is the diverse-reasoning degree D (teacher samples per question), ``student_params`` the
student's parameter count. Rates are fractions in [0, 1]; tables and plots show them in percent.
Plots live in :mod:`cotbridge.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

METRIC_COLUMNS = ("accuracy", "em", "f1")
ROW_EXTRAS = ("degree", "student", "student_params")
METRIC_NAMES = {"accuracy": "Accuracy", "em": "Exact match", "f1": "F1"}
MISSING = "–"
Row = dict[str, Any]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown_table(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """One row per task: n, accuracy ± stderr, EM/F1 where present, and the format diagnostics."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| task | n | accuracy (%) | EM | F1 | format ok | complete | invalid |",
              "|---|---|---|---|---|---|---|---|"]
    for task, m in results.items():
        em = pct(m["em"]) if "em" in m else "–"
        f1 = pct(m["f1"]) if "f1" in m else "–"
        lines.append(f"| {task} | {m['n']} | {pct(m['accuracy'])} ± {pct(m['accuracy_stderr'])} | {em} | {f1} | "
                     f"{pct(m['correct_format'])} | {pct(m['complete'])} | {pct(m['invalid'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- rows

def _num(x: Any) -> float | None:
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
        raise ValueError("rows_from_results expects a results.json summary with a 'results' mapping of task -> metrics")
    rows = []
    for task, m in results_json["results"].items():
        row: Row = {"method": str(method), "task": str(task), "n": int(m["n"]),
                    "accuracy": _num(m["accuracy"]), "stderr": _num(m.get("accuracy_stderr"))}
        for key in ("em", "f1"):
            if key in m:
                row[key], row[f"{key}_stderr"] = _num(m[key]), _num(m.get(f"{key}_stderr"))
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
    from cotbridge.jsonl import read_json

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
        parts = [f"D={r[k]}" if k == "degree" else format_params(r[k]) if k == "student_params" else str(r[k])
                 for k in suffix_keys[r["method"]] if r.get(k) is not None]
        labels.append(f"{r['method']} ({', '.join(parts)})" if parts else str(r["method"]))
    seen: set[tuple[str, str]] = set()
    for label, r in zip(labels, rows):
        if (label, r["task"]) in seen:
            raise ValueError(f"duplicate result rows for method {label!r} on task {r['task']!r} "
                             "(give them distinct method names, degrees or students)")
        seen.add((label, r["task"]))
    return labels


# ---------------------------------------------------------------- tables

def _stderr_key(metric: str) -> str:
    return "stderr" if metric == "accuracy" else f"{metric}_stderr"


def _grid(rows: list[Row], metric: str):
    """(labels, tasks, cells[label][task] = (value, stderr, n), task_n[task] = common n or None)."""
    rows = check_rows(rows)
    if not any(_num(r.get(metric)) is not None for r in rows):
        raise ValueError(f"no result row has a value for metric {metric!r}")
    labels = row_labels(rows)
    cells: dict[str, dict[str, tuple[float | None, float | None, int]]] = {label: {} for label in labels}
    for label, r in zip(labels, rows):
        cells[label][r["task"]] = (_num(r.get(metric)), _num(r.get(_stderr_key(metric))), int(r["n"]))
    tasks = unique(r["task"] for r in rows)
    task_n = {}
    for t in tasks:
        ns = {c[t][2] for c in cells.values() if t in c and c[t][0] is not None}
        task_n[t] = ns.pop() if len(ns) == 1 else None
    return unique(labels), tasks, cells, task_n


def _cell(cell: tuple | None, common_n: int | None, pm: str) -> str | None:
    if cell is None or cell[0] is None:
        return None
    value, se, n = cell
    text = pct(value) + (f" {pm} {pct(se)}" if se is not None else "")
    return text if common_n is not None else f"{text} (n={n})"


def method_table_markdown(rows: list[Row], metric: str = "accuracy") -> str:
    """Methods (first-seen order) × tasks; cells ``62.0 ± 2.1`` in percent, n in the header, ``–`` where missing."""
    labels, tasks, cells, task_n = _grid(rows, metric)
    head = [f"{t} (n={task_n[t]})" if task_n[t] is not None else t for t in tasks]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(tasks) + 1) + "|"]
    for label in labels:
        vals = [_cell(cells[label].get(t), task_n[t], "±") or MISSING for t in tasks]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def method_table_latex(rows: list[Row], metric: str = "accuracy") -> str:
    """The same table as a booktabs ``tabular``; the best value of each column (≥2 entries) in bold."""
    labels, tasks, cells, task_n = _grid(rows, metric)
    best = {}
    for t in tasks:
        vals = [round(100 * c[t][0], 1) for c in cells.values() if t in c and c[t][0] is not None]
        best[t] = max(vals) if len(vals) > 1 else None
    head = [latex_escape(t) + (f" ($n$={task_n[t]})" if task_n[t] is not None else "") for t in tasks]
    name = latex_escape(METRIC_NAMES.get(metric, metric))
    lines = [rf"% requires \usepackage{{booktabs}}; {name} (\%), mean $\pm$ standard error",
             r"\begin{tabular}{l" + "c" * len(tasks) + "}", r"\toprule",
             "Method & " + " & ".join(head) + r" \\", r"\midrule"]
    for label in labels:
        vals = []
        for t in tasks:
            text = _cell(cells[label].get(t), task_n[t], r"$\pm$")
            if text is None:
                vals.append("--")
            elif best[t] is not None and round(100 * cells[label][t][0], 1) == best[t]:
                vals.append(rf"\textbf{{{text}}}")
            else:
                vals.append(text)
        lines.append(latex_escape(label) + " & " + " & ".join(vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- report

PLOT_FILES = {"accuracy_by_method": "Accuracy by method", "accuracy_vs_degree": "Accuracy vs diverse-reasoning degree",
              "accuracy_vs_student_size": "Accuracy vs student size"}


def _distinct(rows: list[Row], key: str) -> set[Any]:
    return {r[key] for r in rows if r.get(key) is not None and _num(r.get("accuracy")) is not None}


def write_report(rows: list[Row], out_dir: str | Path, title: str, notes: str = "") -> dict[str, Path]:
    """Write report.md, report.tex, results_table.json and plots/*.png under ``out_dir``.

    The accuracy-by-method plot is always drawn; accuracy vs D only with ≥2 distinct degrees, accuracy vs
    student size only with ≥2 distinct student sizes. Returns {path relative to out_dir: absolute Path}.
    """
    from cotbridge import plots
    from cotbridge.jsonl import write_json

    rows = check_rows(rows)
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in METRIC_COLUMNS if any(_num(r.get(m)) is not None for r in rows)]

    wanted = {"accuracy_by_method": plots.plot_accuracy_by_method}
    if len(_distinct(rows, "degree")) >= 2:
        wanted["accuracy_vs_degree"] = plots.plot_accuracy_vs_degree
    if len(_distinct(rows, "student_params")) >= 2:
        wanted["accuracy_vs_student_size"] = plots.plot_accuracy_vs_student_size
    paths: dict[str, Path] = {}
    for name in PLOT_FILES:
        path = plot_dir / f"{name}.png"
        if name in wanted:
            paths[f"plots/{name}.png"] = wanted[name](rows, path)
        else:
            path.unlink(missing_ok=True)  # stale from an earlier report into the same directory

    md = [f"# {title}", ""]
    tex = [f"% {title}".replace("\n", " "), ""]
    for m in metrics:
        md += [f"## {METRIC_NAMES[m]} (%, mean ± standard error)", "", method_table_markdown(rows, m)]
        tex += [method_table_latex(rows, m)]
    if notes:
        md += [notes.strip(), ""]
    if paths:
        md += ["## Plots", ""]
        md += [f"![{PLOT_FILES[Path(rel).stem]}]({rel})\n" for rel in paths]
    files = {"report.md": "\n".join(md).rstrip() + "\n", "report.tex": "\n".join(tex)}
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    write_json(out / "results_table.json",  # strict JSON: NaN becomes null
               [{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
    return {"report.md": out / "report.md", "report.tex": out / "report.tex",
            "results_table.json": out / "results_table.json", **paths}
