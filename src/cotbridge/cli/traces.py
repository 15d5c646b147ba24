"""``cotbridge traces``: a released reasoning-trace dataset becomes teacher records (then curate, train, eval)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.options import in_range


def traces_cmd(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="hub dataset id, or local .jsonl/.json/.parquet")],
    layout: Annotated[str, typer.Option(metavar="LAYOUT", help="openthoughts, mixture_of_thoughts or openr1_math")],
    task: Annotated[
        str, typer.Option("--task", "-t", metavar="TASK", help="whose answer type checks the traces, e.g. math500")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="FILE", help="teacher records JSONL (RUN_DIR/teacher/NAME.jsonl)")
    ],
    split: Annotated[str, typer.Option(metavar="SPLIT", help="the dataset's split")] = "train",
    limit: Annotated[
        Optional[int], typer.Option(metavar="N", callback=in_range(ge=1), help="the first N rows")
    ] = None,
    assume_correct: Annotated[
        bool, typer.Option("--assume-correct", help="traces without a gold answer count as correct (source-filtered)")
    ] = False,
) -> None:
    """Turn released reasoning traces into teacher records with provenance (resumable)."""
    from cotbridge.released_traces import import_traces

    s = import_traces(source, layout, task, output, split=split, limit=limit, assume_correct=assume_correct)
    typer.echo(
        f"{s['records']} records in {output} ({s['new']} new; {s['correct']} correct, {s['unverified']} without a "
        "gold answer); next: cotbridge curate " + output + " --rationale both"
    )
