"""``cotbridge instruct``: the Instruction-tuning-CoT recipe (several teachers -> students -> transfer matrix)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.recipe_command import recipe_command


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for row in summary["matrix"]["rows"]:
        cells = "  ".join(f"{t} {100 * c['accuracy']:.1f}% (n={c['n']})" for t, c in row["cells"].items())
        typer.echo(f"{row['name']:>32}: {cells}")
    typer.echo(f"matrix: {cfg.directory() / 'matrix.md'} (+ .json, .png)")


instruct_cmd = recipe_command(
    "instruct",
    "cotbridge.recipes.instruct.config:InstructConfig",
    doc="Several teachers -> instruction-tuned students -> in-domain x out-of-domain matrix (resumable).",
    config_help="instruction-tuning config YAML (see recipes/instruction_tuning_*.yaml)",
    set_example="eval.limit=20",
    stages="teach, merge, train, eval, report",
    print_summary=print_summary,
)
