"""``cotbridge instruct``: the Instruction-tuning-CoT recipe (several teachers -> students -> transfer matrix)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.options import ForceNewOpt, UntilOpt, config_argument, from_option, set_option
from cotbridge.cli.recipe_command import run_recipe_command

SetOpt = set_option("eval.limit=20")
FromOpt = from_option("teach, merge, train, eval, report")
ConfigArg = config_argument("instruction-tuning config YAML (see recipes/instruction_tuning_*.yaml)")


def instruct_cmd(
    config: ConfigArg,
    from_stage: FromOpt = None,
    until: UntilOpt = None,
    set_: SetOpt = None,
    force_new: ForceNewOpt = False,
) -> None:
    """Several teachers -> instruction-tuned students -> in-domain x out-of-domain matrix (resumable)."""
    from cotbridge.recipes.instruct.config import InstructConfig

    run_recipe_command("instruct", InstructConfig, config, set_, from_stage, until, print_summary, force_new)


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for row in summary["matrix"]["rows"]:
        cells = "  ".join(f"{t} {100 * c['accuracy']:.1f}% (n={c['n']})" for t, c in row["cells"].items())
        typer.echo(f"{row['name']:>32}: {cells}")
    typer.echo(f"matrix: {cfg.directory() / 'matrix.md'} (+ .json, .png)")
