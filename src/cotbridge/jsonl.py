"""JSON/JSONL reading with errors that name file and line, and appends that lose nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError
from cotbridge.fileio import replacing, write_text


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield one object per non-blank line; a bad line raises DataError naming file and line."""
    for _, obj in numbered_jsonl(path):
        yield obj


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line, for checks that name the line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    path, f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})", lineno
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", lineno) from None
            if not isinstance(obj, dict):
                raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
            yield lineno, obj


def read_json_if_any(path: str | Path, default: Any = None) -> Any:
    """A file an optional step writes (a report reads what the run has): its JSON, or ``default`` when absent."""
    return read_json(path) if Path(path).is_file() else default


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(path, f"not UTF-8 text (byte {data[e.start]:#04x})", line) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", e.lineno) from None


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write a whole file atomically (temp file + rename): a crash or a full disk never leaves half a file."""
    with replacing(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_json(path: str | Path, obj: Any) -> None:
    """Write a whole JSON file atomically, as :func:`write_jsonl`."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def get_field(record: dict[str, Any], dotted: str, *, path: object = "<record>", line: int | None = None) -> Any:
    """Follow a dotted path (``cot.generation.0``) through dicts and lists; an explicit null gives None."""
    cur: Any = record
    for part in dotted.split("."):
        if cur is None:
            return None
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            have = sorted(cur) if isinstance(cur, dict) else f"a {type(cur).__name__}"
            raise DataError(path, f"field {dotted!r}: no {part!r} here (found {have})", line)
    return cur
