"""Result tables: Markdown (and LaTeX) from results.json-style metrics."""

from __future__ import annotations

from typing import Any

METRIC_COLUMNS = ("accuracy", "em", "f1")


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
