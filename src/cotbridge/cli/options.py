"""Options shared by several commands, defined once (names, metavars and help), and the range check every numeric
option takes while the command line is parsed (:func:`in_range`; options that stand for config keys get their
key's range from :mod:`.help_format`)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cotbridge.errors import UserError, range_words

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


def check_environment() -> None:
    """Refuse a $COTBRIDGE_* setting with a value it does not take before any work starts: each is read only where it
    matters (a model's loading, minutes in), and a command that never gets there would ignore it silently."""
    from cotbridge.allocator import malloc_setting
    from cotbridge.models.cpu_features import forced_native_bf16
    from cotbridge.models.loading import gguf_cache_root

    malloc_setting(), forced_native_bf16(), gguf_cache_root()


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


def in_range(what: str = "", **bounds: float) -> Callable[..., Any]:
    """An option callback that refuses a value outside ``bounds`` (``ge``, ``gt``, ``le``, ``lt``) while the command
    line is parsed, before a model or a file is touched, in the one-line form every user error takes (exit 2);
    ``what`` says what the number is. ``--help`` shows the range (``check.bounds()``, which Typer's wrapper keeps)."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        return checked(param, value, bounds, what)

    check.bounds = lambda: bounds  # type: ignore[attr-defined]
    return check


def checked(param: Any, value: Any, bounds: dict[str, float], what: str = "") -> Any:
    """``value`` if it lies in ``bounds`` (None: the option was left out), else a UserError naming the option, the
    value and the whole range."""
    if value is None:
        return value
    finite = math.isfinite(value)
    if finite and all(
        {"ge": value >= b, "gt": value > b, "le": value <= b, "lt": value < b}[op] for op, b in bounds.items()
    ):
        return value
    name = (param.opts or [f"--{param.name}"])[0]
    must = range_words(bounds) if finite else f"a finite number {range_words(bounds)}".strip()
    raise UserError(f"{name} {value}: must be {must}" + (f" ({what})" if what else ""))


def data_dir_check(ctx: Any, param: Any, value: str | None) -> str | None:
    """The click callback of every ``--data-dir``: a folder that is not there is refused while the command line is
    parsed (a command that reads no task data, or loads the hub instead, would otherwise ignore it silently), and so
    is the empty string (which would otherwise mean "unset": the hub)."""
    if value is None:
        return value
    name = (param.opts or ["--data-dir"])[0]
    what_to_do = f"give the folder that holds the task data, or leave {name} out for $COTBRIDGE_DATA_DIR, else the hub"
    path = Path(value).expanduser()
    if not value.strip():
        problem = f"the data directory is empty text {value!r}"
    elif not path.is_dir():
        problem = f"data directory {value} " + ("is a file, not a folder" if path.exists() else "does not exist")
    else:
        return value
    raise UserError(f"{name}: {problem}; {what_to_do}")
