"""``write_report``: a run's report.md, report.tex, results_table.json and plots from its result rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.fileio import write_text
from cotbridge.jsonl import write_json
from cotbridge.reporting import plots
from cotbridge.reporting.rows import METRIC_COLUMNS, METRIC_NAMES, Row, check_rows, finite_or_none
from cotbridge.reporting.tables import method_table_latex, method_table_markdown

PLOT_FILES = {
    "accuracy_by_method": "Accuracy by method",
    "accuracy_vs_degree": "Accuracy vs diverse-reasoning degree",
    "accuracy_vs_student_size": "Accuracy vs student size",
}


def _distinct(rows: list[Row], key: str) -> set[Any]:
    return {r[key] for r in rows if r.get(key) is not None and finite_or_none(r.get("accuracy")) is not None}


def write_report(rows: list[Row], out_dir: str | Path, title: str, notes: str = "") -> dict[str, Path]:
    """Write report.md, report.tex, results_table.json and plots/*.png under ``out_dir``.

    The accuracy-by-method plot is always drawn; accuracy vs D only with ≥2 distinct degrees, accuracy vs
    student size only with ≥2 distinct student sizes. Returns {path relative to out_dir: absolute Path}.
    """
    rows = check_rows(rows)
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in METRIC_COLUMNS if any(finite_or_none(r.get(m)) is not None for r in rows)]

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
        write_text(out / name, text)
    write_json(
        out / "results_table.json",  # strict JSON: NaN becomes null
        [{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    )
    return {
        "report.md": out / "report.md",
        "report.tex": out / "report.tex",
        "results_table.json": out / "results_table.json",
        **paths,
    }
