"""The transfer matrix as Markdown tables and a heatmap PNG (matplotlib Agg, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.fileio import write_text
from cotbridge.jsonl import write_json
from cotbridge.recipes.instruct.config import InstructConfig
from cotbridge.recipes.instruct.transfer import build_matrix, family_comparison
from cotbridge.reporting.plots import DPI, figure, save_figure
from cotbridge.reporting.rows import pct
from cotbridge.reporting.tables import MISSING
from cotbridge.tasks import get_task


def _pp(delta: float | None) -> str:
    return MISSING if delta is None else f"{100 * delta:+.1f}"


def _acc(x: float | None) -> str:
    return MISSING if x is None else pct(x)


def row_label(row: dict[str, Any]) -> str:
    if not row.get("tuned_on"):
        return "base (untuned)"
    fams = "+".join(sorted(set(row["families"])))
    return f"{row['tuned_on']} ← {'+'.join(row['teachers'])} ({fams})"


def matrix_markdown(matrix: dict[str, Any]) -> str:
    """Accuracy % ± stderr (n) per cell; in-domain cells bold; OOD mean and differences to base at the end."""
    cols = matrix["columns"]
    head = (
        "| tuned on ← teacher (family) | demos | " + " | ".join(cols) + " | in-domain Δ base | OOD mean | OOD Δ base |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    for r in matrix["rows"]:
        cells = []
        for col in cols:
            c = r["cells"].get(col)
            if c is None:
                cells.append(MISSING)
                continue
            text = f"{pct(c['accuracy'])} ± {pct(c['stderr'] or 0.0)} (n={c['n']})"
            cells.append(f"**{text}**" if c["in_domain"] else text)
        demos = r.get("demonstrations")
        lines.append(
            f"| {row_label(r)} | {demos if demos is not None else MISSING} | "
            + " | ".join(cells)
            + f" | {_pp(r.get('in_domain_delta'))} | {_acc(r.get('out_of_domain_mean'))} "
            f"| {_pp(r.get('out_of_domain_delta'))} |"
        )
    return "\n".join(lines) + "\n"


def rate_markdown(matrix: dict[str, Any], key: str) -> str:
    """One per-cell rate in %: ``complete`` (ended by itself, not cut at max_tokens: a cut answer is a wrong one)
    or ``correct_format`` (the answer came after a marker such as "The answer is")."""
    cols = matrix["columns"]
    lines = ["| tuned on ← teacher (family) | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in matrix["rows"]:
        vals = [_acc(r["cells"][c].get(key)) if c in r["cells"] else MISSING for c in cols]
        lines.append(f"| {row_label(r)} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def family_markdown(fam: dict[str, Any], student: str, student_family: str | None) -> str:
    lines = [
        f"Student `{student}` (family: {student_family or 'not set'}). Δ = difference to the untuned student, "
        "in percentage points; OOD = mean over the other tasks of the matrix.",
        "",
        "| tuned on | teacher | family | w.r.t. student | demos | in-domain | Δ | OOD mean | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entries in fam["by_task"].items():
        for e in entries:
            lines.append(
                f"| {task} | {'+'.join(e['teachers'])} | {e['family']} | {e['relation']} | "
                f"{e['demonstrations'] if e['demonstrations'] is not None else MISSING} | {_acc(e['in_domain'])} | "
                f"{_pp(e['in_domain_delta'])} | {_acc(e['out_of_domain_mean'])} | {_pp(e['out_of_domain_delta'])} |"
            )
    for title, key in (
        ("Teacher family, tasks that several families taught", "by_family_on_shared_tasks"),
        ("Teacher family, all rows", "by_family"),
        ("Same- vs cross-family w.r.t. the student", "by_relation"),
    ):
        groups = fam.get(key) or {}
        if not groups:
            continue
        lines += [
            "",
            f"**{title}** (means over rows)",
            "",
            "| group | rows | tasks | in-domain | Δ | OOD mean | Δ |",
            "|---|---|---|---|---|---|---|",
        ]
        for g, s in groups.items():
            lines.append(
                f"| {g} | {s['rows']} | {', '.join(s['tasks'])} | {_acc(s['in_domain'])} "
                f"| {_pp(s['in_domain_delta'])} | "
                f"{_acc(s['out_of_domain_mean'])} | {_pp(s['out_of_domain_delta'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_heatmap(matrix: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Accuracy heatmap: rows = tuned on, columns = tested on; each cell shows accuracy and n."""
    import numpy as np

    cols, rows = matrix["columns"], matrix["rows"]
    if not rows or not cols:
        raise ValueError("empty matrix: nothing to plot")
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, col in enumerate(cols):
            if col in r["cells"]:
                grid[i, j] = 100 * r["cells"][col]["accuracy"]
    labels = [row_label(r) for r in rows]
    width = 2.2 + 1.6 * len(cols) + 0.07 * max(len(s) for s in labels)
    fig, axes = figure((width, 1.2 + 0.55 * len(rows)))
    ax = axes[0]
    img = ax.imshow(
        np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", vmin=0, vmax=max(1.0, float(np.nanmax(grid)))
    )
    fig.colorbar(img, ax=ax, label="accuracy (%)")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlabel("tested on")
    ax.set_ylabel("tuned on ← teacher (family)")
    for i, r in enumerate(rows):
        for j, col in enumerate(cols):
            c = r["cells"].get(col)
            if c is None:
                continue
            dark = grid[i, j] < 0.6 * np.nanmax(grid)
            ax.text(
                j,
                i,
                f"{grid[i, j]:.1f}\nn={c['n']}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
                fontweight="bold" if c["in_domain"] else "normal",
            )
            if c["in_domain"]:
                ax.add_patch(_box(i, j))
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, DPI)


def _box(i: int, j: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)


def write_matrix_report(
    cfg: InstructConfig, rows: list[dict[str, Any]], evaluated: dict[str, Any], template: str, prompt_mode: str
) -> dict[str, Any]:
    """``matrix.json`` (the summary it returns), ``matrix.png`` and ``matrix.md`` in the run directory."""
    run_dir = cfg.directory()
    columns = [get_task(t.partition(":")[0]).name for t in cfg.matrix_tasks()]
    matrix = build_matrix(rows, columns, evaluated["cells"])
    families = family_comparison(matrix)
    summary = {
        "name": cfg.name,
        "student": cfg.student.model,
        "student_family": cfg.student.family,
        "template": template,
        "prompt_mode": prompt_mode,
        "matrix": matrix,
        "families": families,
        "teachers": [t.model_dump(include={"name", "family", "backend", "model"}) for t in cfg.teachers],
        "test_sets": {k: {kk: v for kk, v in ts.items() if kk != "ids"} for k, ts in evaluated["test_sets"].items()},
    }
    write_json(run_dir / "matrix.json", summary)
    png = plot_heatmap(matrix, run_dir / "matrix.png", title=f"{cfg.name}: student {cfg.student.model}")
    md = [
        f"# Instruction-tuning-CoT transfer matrix: {cfg.name}",
        "",
        "Rows: what the student was tuned on (← teacher, family); columns: what it is tested on. "
        "Accuracy % ± standard error (n test questions); in-domain cells in bold.",
        "",
        matrix_markdown(matrix),
        f"Outputs that finished within {cfg.eval.max_tokens} new tokens (%):",
        "",
        rate_markdown(matrix, "complete"),
        "Outputs whose answer followed a marker such as 'The answer is' (%):",
        "",
        rate_markdown(matrix, "correct_format"),
        "## Teacher families",
        "",
        family_markdown(families, cfg.student.model, cfg.student.family),
        "",
        f"![heatmap]({png.name})",
        "",
    ]
    write_text(run_dir / "matrix.md", "\n".join(md))
    return summary
