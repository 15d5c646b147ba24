"""``cotbridge run``: the Fine-tune-CoT recipe (teach -> curate -> train -> eval -> report)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.options import ForceNewOpt, UntilOpt, config_argument, from_option, set_option
from cotbridge.cli.recipe_command import run_recipe_command

SetOpt = set_option("student.epochs=3")
FromOpt = from_option("teach, curate, train, eval, report")
ConfigArg = config_argument("run config YAML (see examples/ and recipes/)")


def run_cmd(
    config: ConfigArg,
    from_stage: FromOpt = None,
    until: UntilOpt = None,
    set_: SetOpt = None,
    force_new: ForceNewOpt = False,
) -> None:
    """Teach -> curate -> train -> eval -> report in one resumable run directory."""
    from cotbridge.recipes.finetune_cot.config import RunConfig

    run_recipe_command("finetune_cot", RunConfig, config, set_, from_stage, until, print_summary, force_new)


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for method, res in summary["results"].items():
        for task, m in res.items():
            typer.echo(f"{method:>24} {task}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']})")
    typer.echo(f"report: {summary['report'].get('report.md', cfg.directory() / 'report.md')}")
