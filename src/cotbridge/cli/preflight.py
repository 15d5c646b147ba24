"""``cotbridge preflight``: can the teacher of an on-policy config grade its student token by token?"""

from __future__ import annotations

import typer

from cotbridge.cli.options import config_argument, set_option

ConfigArg = config_argument("on-policy config YAML (see recipes/on_policy_offline.yaml)")
SetOpt = set_option("distill.teacher=smollm2-135m-instruct")


def preflight_cmd(config: ConfigArg, set_: SetOpt = None) -> None:
    """Tokenizers, chat templates and teacher log-probs of an on-policy pair; each failure is one line (exit 2)."""
    from cotbridge.config import load_config
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig
    from cotbridge.recipes.on_policy.recipe import pair_checks

    for check in pair_checks(load_config(OnPolicyRunConfig, config, set_)):
        typer.echo(f"{check['status']:>4}  {check['name']}: {check['detail']}")
