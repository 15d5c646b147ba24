"""The ``cotbridge`` Typer app: the commands (one module each), ``--verbose``, and :func:`main`, which turns a
:class:`~cotbridge.errors.UserError` into one line on stderr and exit status 2 (no traceback)."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cotbridge.cli import (
    curate,
    eval_cmd,
    instruct,
    lmguided,
    onpolicy,
    preflight,
    run,
    score,
    serve,
    tasks,
    teach,
    traces,
    train,
    view,
)
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


# click's UsageError as typer raises it: click's own, or that of the copy of click newer typers carry (0.29 does)
UsageError: type[Exception] = typer.BadParameter.__base__  # type: ignore[assignment]


class UsageLine(UsageError):  # type: ignore[misc,valid-type]
    """A usage error (unknown option, a value click cannot convert) as one line naming the command and its --help,
    in click's own words; click prints the usage, a hint and the error on four."""

    def __init__(self, error: Any, path: str):
        path = error.ctx.command_path if error.ctx is not None else path
        problem = error.format_message().strip()
        if problem[:1].isupper() and problem[1:2].islower():  # "No such option" -> "no such option"
            problem = problem[0].lower() + problem[1:]
        super().__init__(f"{path}: {problem.removesuffix('.')} (see {path} --help)", error.ctx)

    def show(self, file: Any = None) -> None:
        typer.echo(f"error: {self.message}", err=True)  # as every other refusal starts


class Group(TyperGroup):
    """Typer's group, with every usage error (the group's own and each command's, raised while parsing) as one line."""

    def make_context(self, info_name: str | None, args: list[str], *rest: Any, **kwargs: Any) -> Any:
        with one_line_usage(lambda: info_name or "cotbridge"):
            return super().make_context(info_name, args, *rest, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        # some errors come without their context (`--chat=3`): name the command being parsed, set before its options
        with one_line_usage(lambda: " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))):
            return super().invoke(ctx)


@contextlib.contextmanager
def one_line_usage(command_path: Callable[[], str]) -> Iterator[None]:
    try:
        yield
    except UsageError as e:
        # `cotbridge` alone raises one too, to print the help (no_args_is_help); a UsageLine is already one line
        if isinstance(e, UsageLine) or type(e).__name__ == "NoArgsIsHelpError":
            raise
        raise UsageLine(e, command_path()) from None


app = typer.Typer(
    help=HELP,
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
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
app.command("eval", cls=with_settings(eval_cmd.SETTINGS, options=eval_cmd.OPTIONS, choices=eval_cmd.CHOICES))(
    eval_cmd.eval_cmd
)
app.command("teach", cls=with_settings(teach.SETTINGS, options=teach.OPTIONS, choices=teach.CHOICES))(teach.teach_cmd)
app.command("traces", cls=with_settings(traces.SETTINGS, options=traces.OPTIONS, choices=traces.CHOICES))(
    traces.traces_cmd
)
app.command("curate", cls=with_settings(curate.SETTINGS, options=curate.OPTIONS, choices=curate.CHOICES))(
    curate.curate_cmd
)
app.command("train", cls=with_settings(train.SETTINGS, train.SETTINGS_NOTE))(train.train_cmd)
app.command("run", cls=Command)(run.run_cmd)
app.command("instruct", cls=Command)(instruct.instruct_cmd)
app.command("lmguided", cls=Command)(lmguided.lmguided_cmd)
app.command("onpolicy", cls=Command)(onpolicy.onpolicy_cmd)
app.command("preflight", cls=Command)(preflight.preflight_cmd)
app.command("score", cls=with_settings(score.SETTINGS, score.SETTINGS_NOTE))(score.score_cmd)
app.command("serve", cls=with_settings(serve.SETTINGS, options=serve.OPTIONS))(serve.serve_cmd)
app.command("view", cls=Command)(view.view_cmd)


def main() -> None:
    """Every user-facing failure ends in one line on stderr and exit status 2 (``-v`` adds the traceback); files a
    command already wrote stay as they are, and rerunning the same command resumes."""
    interrupted = "interrupted: everything already written is kept; rerun the same command to resume"
    try:
        app()
    except KeyboardInterrupt:
        typer.echo(interrupted, err=True)
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # Typer turns Ctrl-C into exit status 130 without a word
            typer.echo(interrupted, err=True)
        raise
    except Exception as e:  # noqa: BLE001  (each kind below gets its one-line message)
        message = one_line_error(e)
        if message is None:
            raise
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exc()
        close_progress_bars()
        # one line even where a path or a value holds a line break (a file named "no\nfile.yaml")
        typer.echo("error: " + message.replace("\r", "\\r").replace("\n", "\\n"), err=True)
        sys.exit(2)


def close_progress_bars() -> None:
    """Close the progress bars a failure left open (a trainer's, held by the traceback's frames): closed later, at
    exit, they would print themselves again below the one-line error."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001  (a bar that cannot close must not hide the error)
            pass


# What to do about a file-system failure. Every writer replaces a file whole or appends whole records, so a failed
# command leaves the files of earlier runs as they were and no half-written or temporary file.
_KEPT = "files written before are kept"
OS_ERROR_HINTS = {
    errno.EACCES: f"check its permissions, or choose a folder you can write to ({_KEPT})",
    errno.EPERM: f"check its permissions, or choose a folder you can write to ({_KEPT})",
    errno.EROFS: f"the file system is read-only: choose a writable folder ({_KEPT})",
    errno.ENOSPC: f"the disk is full: free some space and rerun ({_KEPT})",
    errno.EDQUOT: f"the disk quota is used up: free some space and rerun ({_KEPT})",
    errno.EFBIG: f"the file is too large for this file system: choose another folder ({_KEPT})",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a file stands where a folder belongs: move it or choose another path",
    errno.EEXIST: "a file stands where a folder belongs: move it or choose another path",
    errno.EISDIR: "a folder stands where a file belongs: choose another path",
    errno.EAGAIN: "another process holds it: wait for it to finish",
}


def one_line_error(e: BaseException) -> str | None:
    """The one-line message for a failure the user can act on; None for a bug (which keeps its traceback)."""
    import sqlite3

    if isinstance(e, UserError):
        return str(e)
    if type(e).__name__ == "BackendError":  # an API that failed for good: the message names the call and the URL
        if "timeout" in str(e):  # a slow server: each request waited timeout_s while `concurrency` others queued
            return (
                f"{e}; the server answers slower than timeout_s: raise --set teacher.options.timeout_s=... or lower "
                "teacher.options.concurrency, then rerun to resume (paid calls are cached)"
            )
        return f"{e}; check the server, the URL and the key, then rerun to resume (paid calls are cached)"
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8"
    if isinstance(e, OSError):  # writers name their file (cotbridge.fileio); what they wrote before is kept
        where = e.filename if e.filename is not None else "a file"
        return f"{where}: {e.strerror or e}; {OS_ERROR_HINTS.get(e.errno or 0, 'check the path and its permissions')}"
    if isinstance(e, sqlite3.Error):
        return f"request cache: {e}; point $COTBRIDGE_CACHE (or the cache setting) at a writable file"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return (
            "out of memory; lower batch_size or max_length (--set batch_size=4), or turn on "
            "--set gradient_checkpointing=true; finished checkpoints are kept and a rerun resumes"
        )
    return None
