"""What the recipe commands (run, instruct, lmguided) share: load the config with ``--set``, run the recipe's
stages on the engine with ``--from`` / ``--until``, and print its summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


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
