"""``cotbridge lmguided``: the LM-guided CoT recipe (small writer, frozen large reader; KD then RL)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.options import ForceNewOpt, UntilOpt, config_argument, from_option, set_option
from cotbridge.cli.recipe_command import run_recipe_command

SetOpt = set_option("rl.steps=20")
FromOpt = from_option("teach, kd, rl, eval, score, report")
ConfigArg = config_argument("LM-guided CoT config YAML (see recipes/lm_guided_cot_offline.yaml)")


def lmguided_cmd(
    config: ConfigArg,
    from_stage: FromOpt = None,
    until: UntilOpt = None,
    set_: SetOpt = None,
    force_new: ForceNewOpt = False,
) -> None:
    """Small model writes rationales, frozen large model answers: teach -> KD -> RL -> eval -> score -> report."""
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig

    run_recipe_command("lm_guided", LMGuidedConfig, config, set_, from_stage, until, print_summary, force_new)


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for row, per_task in summary.get("results", {}).items():
        cells = "  ".join(
            f"{t} EM {100 * m['em']:.1f} F1 {100 * m['f1']:.1f} (n={m['n']})" for t, m in per_task.items()
        )
        typer.echo(f"{row:>10}: {cells}")
    typer.echo(f"report: {cfg.directory() / 'report.md'}")
