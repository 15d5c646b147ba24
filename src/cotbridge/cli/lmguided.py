"""``cotbridge lmguided``: the LM-guided CoT recipe (small writer, frozen large reader; KD then RL)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.recipe_command import recipe_command


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for row, per_task in summary.get("results", {}).items():
        cells = "  ".join(
            f"{t} EM {100 * m['em']:.1f} F1 {100 * m['f1']:.1f} (n={m['n']})" for t, m in per_task.items()
        )
        typer.echo(f"{row:>10}: {cells}")
    typer.echo(f"report: {cfg.directory() / 'report.md'}")


lmguided_cmd = recipe_command(
    "lm_guided",
    "cotbridge.recipes.lm_guided.config:LMGuidedConfig",
    doc="Small model writes rationales, frozen large model answers: teach -> KD -> RL -> eval -> score -> report.",
    config_help="LM-guided CoT config YAML (see recipes/lm_guided_cot_offline.yaml)",
    set_example="rl.steps=20",
    stages="teach, kd, rl, eval, score, report",
    print_summary=print_summary,
)
