"""Task registry: ``get_task(name)`` / ``TASKS``. Importing this package registers every built-in task."""

from __future__ import annotations

from typing import Any

from cotbridge.errors import UserError
from cotbridge.tasks import finetune_cot, multihop, reasoning, synthetic  # noqa: F401  (registration side effects)
from cotbridge.tasks.base import Example, Task, resolve_data_dir
from cotbridge.tasks.registry import TASKS, register_task

__all__ = ["TASKS", "Example", "Task", "get_task", "parse_task_spec", "register_task", "resolve_data_dir"]


def get_task(name: str) -> Task:
    return TASKS.get(name)


def parse_task_spec(spec: str) -> tuple[Task, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` (parameters of synthetic tasks, e.g. ``synthetic_arithmetic:k=4``)."""
    name, _, arg_text = spec.partition(":")
    task = get_task(name.strip())
    params: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in arg_text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"task spec {spec!r}: expected key=value, got {item!r}")
        default = task.params.get(key.strip())
        try:
            params[key.strip()] = (
                type(default)(value) if default is not None and not isinstance(default, bool) else value
            )
        except ValueError:
            raise UserError(f"task spec {spec!r}: {key}={value!r} is not a {type(default).__name__}") from None
    return task, params
