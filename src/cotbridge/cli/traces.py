"""``cotbridge traces``: released reasoning traces (OpenThoughts, Mixture-of-Thoughts, OpenR1-Math) as teacher records.

Each option stands for a TracesConfig key (OPTIONS); its help is that key's comment, rendered from the config class.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.help_format import config_flags
from cotbridge.cli.options import ConfigOpt, set_option
from cotbridge.errors import UserError

SETTINGS = "cotbridge.released_traces:TracesConfig"
SetOpt = set_option("limit=1000")
OPTIONS = {k: k for k in ("source", "layout", "task", "output", "split", "limit", "assume_correct")}
CHOICES = {"layout": "cotbridge.released_traces:LAYOUTS"}
Str = Optional[str]


def traces_cmd(
    source: Annotated[Str, typer.Argument(metavar="SOURCE")] = None,
    layout: Annotated[Str, typer.Option(metavar="LAYOUT")] = None,
    task: Annotated[Str, typer.Option("--task", "-t", metavar="TASK")] = None,
    output: Annotated[Str, typer.Option("--output", "-o", metavar="FILE")] = None,
    split: Annotated[Str, typer.Option(metavar="SPLIT")] = None,
    limit: Annotated[Optional[int], typer.Option(metavar="N")] = None,
    assume_correct: Annotated[Optional[bool], typer.Option("--assume-correct")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Turn released reasoning traces into teacher records with provenance (resumable)."""
    from cotbridge.config import load_config
    from cotbridge.released_traces import TracesConfig, import_traces

    cfg = load_config(TracesConfig, config, set_, config_flags(locals(), OPTIONS))
    missing = [k for k in ("source", "layout", "task", "output") if getattr(cfg, k) is None]
    if missing:
        raise UserError(f"traces needs SOURCE, --layout, --task and --output (or their keys in --config): {missing}")
    picked = {"split": cfg.split, "limit": cfg.limit, "assume_correct": cfg.assume_correct}
    s = import_traces(cfg.source, cfg.layout, cfg.task, cfg.output, **picked)
    typer.echo(
        f"{s['records']} records in {cfg.output} ({s['new']} new; {s['correct']} correct, {s['unverified']} without "
        f"a gold answer); next: cotbridge curate {cfg.output} --rationale both"
    )
