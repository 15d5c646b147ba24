"""What the recipe commands (run, instruct, lmguided) share: one command built per recipe, which loads the config
with ``--set``, runs the recipe's stages on the engine with ``--from`` / ``--until`` / ``--force-new`` and prints its
summary. (No ``from __future__ import annotations`` here: Typer reads the built command's option annotations as
objects.)"""

import importlib
from collections.abc import Callable
from typing import Any

import typer

from cotbridge.cli.options import ForceNewOpt, UntilOpt, config_argument, from_option, set_option


def recipe_command(
    recipe: str,
    config_class: str,
    *,
    doc: str,
    config_help: str,
    set_example: str,
    stages: str,
    print_summary: Callable[[Any, dict[str, Any]], None],
) -> Callable[..., None]:
    """The command for ``recipe`` (its name in ``engine.RECIPES``). ``config_class`` is ``module:Class``, imported
    only when the command runs, so ``--help`` stays fast; ``set_example`` is a real key of that config and
    ``stages`` the recipe's stage names, shown in ``--help``."""
    set_opt, from_opt, config_arg = set_option(set_example), from_option(stages), config_argument(config_help)

    def command(
        config: config_arg,
        from_stage: from_opt = None,
        until: UntilOpt = None,
        set_: set_opt = None,
        force_new: ForceNewOpt = False,
    ) -> None:
        module, _, name = config_class.partition(":")
        cls = getattr(importlib.import_module(module), name)
        run_recipe_command(recipe, cls, config, set_, from_stage, until, print_summary, force_new)

    command.__doc__ = doc
    return command


def run_recipe_command(
    recipe: str,
    config_class: type,
    config: str,
    sets: list[str] | None,
    from_stage: str | None,
    until: str | None,
    print_summary: Callable[[Any, dict[str, Any]], None],
    force_new: bool = False,
) -> None:
    """``recipe``: its name in ``engine.RECIPES``; ``print_summary(cfg, summary)`` prints a finished run's summary."""
    import cotbridge.recipes  # noqa: F401  (registers the recipes)
    from cotbridge.config import load_config
    from cotbridge.engine import RECIPES, run_recipe

    cfg = load_config(config_class, config, sets)
    summary = run_recipe(RECIPES.get(recipe)(cfg), from_stage, until, force_new=force_new)
    if "stopped_after" in summary:
        typer.echo(f"stopped after {summary['stopped_after']}")
    else:
        print_summary(cfg, summary)
