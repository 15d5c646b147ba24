"""Markdown and LaTeX tables: per-task evaluation summaries and methods × tasks tables of result rows."""

from __future__ import annotations

from typing import Any

from cotbridge.reporting.rows import METRIC_NAMES, Row, check_rows, finite_or_none, pct, row_labels, unique

MISSING = "–"


def markdown_table(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """One row per task: n, accuracy ± stderr, EM/F1 where present, and the format diagnostics."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| task | n | accuracy (%) | EM | F1 | format ok | complete | invalid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, m in results.items():
        em = pct(m["em"]) if "em" in m else "–"
        f1 = pct(m["f1"]) if "f1" in m else "–"
        lines.append(
            f"| {task} | {m['n']} | {pct(m['accuracy'])} ± {pct(m['accuracy_stderr'])} | {em} | {f1} | "
            f"{pct(m['correct_format'])} | {pct(m['complete'])} | {pct(m['invalid'])} |"
        )
    return "\n".join(lines) + "\n"


def _stderr_key(metric: str) -> str:
    return "stderr" if metric == "accuracy" else f"{metric}_stderr"


def _grid(rows: list[Row], metric: str):
    """(labels, tasks, cells[label][task] = (value, stderr, n), task_n[task] = common n or None)."""
    rows = check_rows(rows)
    if not any(finite_or_none(r.get(metric)) is not None for r in rows):
        raise ValueError(f"no result row has a value for metric {metric!r}")
    labels = row_labels(rows)
    cells: dict[str, dict[str, tuple[float | None, float | None, int]]] = {label: {} for label in labels}
    for label, r in zip(labels, rows):
        cells[label][r["task"]] = (
            finite_or_none(r.get(metric)),
            finite_or_none(r.get(_stderr_key(metric))),
            int(r["n"]),
        )
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


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


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
    lines = [
        rf"% requires \usepackage{{booktabs}}; {name} (\%), mean $\pm$ standard error",
        r"\begin{tabular}{l" + "c" * len(tasks) + "}",
        r"\toprule",
        "Method & " + " & ".join(head) + r" \\",
        r"\midrule",
    ]
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
