"""Training rows read and checked before a model is loaded: every row of a ``cotbridge train`` data file must hold
the fields its trainer reads (SFT: prompt and completion; on-policy: prompt), each text or a list of chat messages.
A bad row is named by file and line instead of failing as a KeyError after the student was loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.errors import DataError
from cotbridge.jsonl import numbered_jsonl

FIELDS = {"sft": ("prompt", "completion"), "on_policy": ("prompt",)}
HINT = "training rows hold a prompt and a completion, as `cotbridge curate` writes them"


def is_text_or_messages(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value)
    )


def read_training_rows(path: str | Path, trainer: str = "sft") -> list[dict[str, Any]]:
    rows = []
    for line, row in numbered_jsonl(path):
        for key in FIELDS[trainer]:
            if key not in row:
                raise DataError(path, f"row has no {key!r} field ({HINT})", line)
            if not is_text_or_messages(row[key]):
                raise DataError(path, f"{key!r} is neither text nor a list of chat messages ({{role, content}})", line)
        rows.append(row)
    if not rows:
        raise DataError(path, f"no training rows ({HINT})")
    return rows
