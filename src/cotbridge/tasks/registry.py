"""The task registry. Task modules register themselves on import (see tasks/__init__.py)."""

from __future__ import annotations

from cotbridge.registry import Registry
from cotbridge.tasks.base import Task

TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.add(task.name, task)
