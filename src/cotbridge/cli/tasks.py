"""``cotbridge tasks``: the task registry as a table."""

from __future__ import annotations

import typer


def tasks_cmd() -> None:
    """List every registered task with its answer type, version and split sizes (from the registry: no task data is
    read)."""
    from cotbridge.tasks import TASKS, get_task

    rows = [("task", "family", "answer", "version", "train", "test", "params")]
    for name in TASKS:
        t = get_task(name)
        params = ",".join(f"{k}={v}" for k, v in t.params.items())
        letters = f" {t.choice_letters[0]}-{t.choice_letters[-1]}" if t.choice_letters else ""
        rows.append(
            (name, t.family, t.answer_type + letters, t.version, str(t.sizes["train"]), str(t.sizes["test"]), params)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
