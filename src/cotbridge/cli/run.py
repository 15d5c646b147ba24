"""``cotbridge run``: the Fine-tune-CoT recipe (teach -> curate -> train -> eval -> report)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.recipe_command import recipe_command
from cotbridge.cli.view import write_beside


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for method, res in summary["results"].items():
        for task, m in res.items():
            typer.echo(f"{method:>24} {task}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']})")
    typer.echo(f"report: {summary['report'].get('report.md', cfg.directory() / 'report.md')}")
    write_beside(cfg.directory())  # every question of the run, in one page a browser opens from disk


run_cmd = recipe_command(
    "finetune_cot",
    "cotbridge.recipes.finetune_cot.config:RunConfig",
    doc="Teach -> curate -> train -> eval -> report in one resumable run directory.",
    config_help="run config YAML (see examples/ and recipes/)",
    set_example="student.epochs=3",
    stages="teach, curate, train, eval, report",
    print_summary=print_summary,
)
