"""Append-only JSONL record files that survive a crash: one whole line per write, torn tails repaired."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError
from cotbridge.fileio import append_whole

log = logging.getLogger(__name__)


class RecordFile:
    """Records keyed by ``key``; ``append`` makes each record durable before the next paid call."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        for lineno, raw in enumerate(data.splitlines(keepends=True), 1):
            complete = raw.endswith(b"\n")
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                if not complete:  # a write cut short by a crash: drop it, it will be redone
                    log.warning("%s:%d: dropping a record cut short by an interrupted write", self.path, lineno)
                    break
                raise DataError(
                    self.path, "invalid JSON record (not at the end of the file, so not a torn write)", lineno
                ) from None
            if not complete:
                # A whole JSON object without its newline: keep it and finish the line.
                append_whole(self.path, b"\n")
            if not isinstance(rec, dict) or "key" not in rec:
                raise DataError(self.path, "record without a 'key'", lineno)
            self.records[rec["key"]] = rec
            good_end += len(raw) + (0 if complete else 1)
        if good_end < len(data):
            os.truncate(self.path, good_end)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, records: list[dict[str, Any]]) -> None:
        payload = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
        if not payload:
            return
        append_whole(self.path, payload)  # all the chunk's lines or none (a full disk): never a torn line
        for r in records:
            self.records[r["key"]] = r
