"""Options shared by several commands, defined once (names, metavars and help)."""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Optional

import typer

DataDirOpt = Annotated[
    Optional[str],
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="folder with task data (Fine-tune-CoT layout, gsm8k/, multihop/); "
        "default $COTBRIDGE_DATA_DIR, else the HF hub",
    ),
]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", metavar="FILE", help="YAML config file")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", metavar="DIR", help="output directory")]
UntilOpt = Annotated[Optional[str], typer.Option(metavar="STAGE", help="stop after this stage")]
ForceNewOpt = Annotated[
    bool,
    typer.Option(
        "--force-new",
        help="the run directory holds outputs of other settings: keep them aside as DIR.replaced-TIME and start over",
    ),
]


def config_argument(help: str) -> Any:
    """The recipe commands' CONFIG argument (a YAML file)."""
    return Annotated[str, typer.Argument(metavar="CONFIG", help=help)]


def set_option(example: str) -> Any:
    """The repeatable ``--set KEY=VALUE`` option; ``example`` is a real key of the command's own config."""
    return Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", metavar="KEY=VALUE", help=f"override a config key, e.g. --set {shlex.quote(example)} (repeatable)"
        ),
    ]


def from_option(stages: str) -> Any:
    """The recipe commands' ``--from STAGE``; ``stages`` lists the recipe's stage names in order."""
    return Annotated[
        Optional[str], typer.Option("--from", metavar="STAGE", help=f"redo this stage and the later ones: {stages}")
    ]
