"""``cotbridge view``: a run (or two side by side) as one static HTML page, opened from disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def view_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="a run directory, an eval output folder, a scored or teacher-records JSONL; two: side by side",
        ),
    ],
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out", "-o", metavar="FILE.html", help="where to write the page (default: view.html in the run)"
        ),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
) -> None:
    """Write one self-contained HTML page of a run: summary, every question, teacher samples, outputs, filters."""
    from cotbridge.view import write_view

    page = write_view(paths, out)
    typer.echo(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB)")
    if open_:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


def write_beside(run_dir: str | Path) -> None:
    """The page of a finished run, written beside it; a failure is a warning, never the run's failure."""
    try:
        from cotbridge.view import write_view

        typer.echo(f"view: {write_view([run_dir])}")
    except Exception as e:  # noqa: BLE001  (the run itself succeeded: its page is a convenience)
        typer.echo(f"warning: could not write {Path(run_dir) / 'view.html'}: {e}", err=True)
