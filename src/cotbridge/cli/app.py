"""The ``cotbridge`` Typer app: the commands (one module each), ``--verbose``, and :func:`main`, which turns a
:class:`~cotbridge.errors.UserError` into one line on stderr and exit status 2 (no traceback)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from cotbridge.cli import curate, eval_cmd, instruct, lmguided, run, score, serve, tasks, teach, train
from cotbridge.cli.help_format import Command, with_settings
from cotbridge.errors import UserError

# "\b" keeps click from re-wrapping the block: one command per line, as typed (run from the repository root).
HELP = """cotbridge: transfer chain-of-thought reasoning between large and small language models.

Quick start (offline, from the repository root):

\b
  cotbridge tasks
  cotbridge eval --model smollm2-135m-instruct --task synthetic_arithmetic:k=2 --limit 20
  cotbridge eval --task svamp --data-dir ../shared/data --predictions ../shared/data/teacher_rationales/rereading_re2/svamp__gpt-4o-mini-2024-07-18.jsonl --text-field cot.generation.0 --gold-field target
  cotbridge run examples/quickstart.yaml

Run `cotbridge COMMAND --help` for a command's options and settings.
"""  # noqa: E501  (the quick-start lines are kept whole so they can be copied)

app = typer.Typer(
    help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False
)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


app.command("tasks", cls=Command)(tasks.tasks_cmd)
app.command("eval", cls=with_settings(eval_cmd.SETTINGS))(eval_cmd.eval_cmd)
app.command("teach", cls=with_settings(teach.SETTINGS))(teach.teach_cmd)
app.command("curate", cls=Command)(curate.curate_cmd)
app.command("train", cls=with_settings(train.SETTINGS, train.SETTINGS_NOTE))(train.train_cmd)
app.command("run", cls=Command)(run.run_cmd)
app.command("instruct", cls=Command)(instruct.instruct_cmd)
app.command("lmguided", cls=Command)(lmguided.lmguided_cmd)
app.command("score", cls=with_settings(score.SETTINGS, score.SETTINGS_NOTE))(score.score_cmd)
app.command("serve", cls=Command)(serve.serve_cmd)


def main() -> None:
    try:
        app()
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
