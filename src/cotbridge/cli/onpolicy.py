"""``cotbridge onpolicy``: the on-policy distillation recipe (preflight, SFT warm-up, distill, eval, report)."""

from __future__ import annotations

from typing import Any

import typer

from cotbridge.cli.recipe_command import recipe_command


def print_summary(cfg: Any, summary: dict[str, Any]) -> None:
    for method, res in summary["results"].items():
        for task, m in res.items():
            typer.echo(f"{method:>12} {task}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']})")
    typer.echo(f"report: {summary['report'].get('report.md', cfg.directory() / 'report.md')}")


onpolicy_cmd = recipe_command(
    "on_policy",
    "cotbridge.recipes.on_policy.config:OnPolicyRunConfig",
    doc="The student samples, a same-tokenizer teacher grades every token (GKD), after an optional SFT warm-up.",
    config_help="on-policy config YAML (see recipes/on_policy_offline.yaml)",
    set_example="distill.lmbda=0.5",
    stages="preflight, init, teach, curate, warmup, distill, eval, report",
    print_summary=print_summary,
)
