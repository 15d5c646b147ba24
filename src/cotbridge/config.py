"""Typed configs loaded from YAML with command-line overrides (default < YAML < --set < flags).

Unknown keys are errors that name the key and where it came from.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from cotbridge.errors import UserError

C = TypeVar("C", bound="StrictModel")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_config(
    cls: type[C], path: str | Path | None = None, sets: list[str] | None = None, flags: dict[str, Any] | None = None
) -> C:
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        source = str(path)
        data = read_yaml(path)
    for item in sets or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--set {item!r}: expected key=value")
        set_dotted(data, key.strip(), yaml.safe_load(value))
        source = f"{source} + --set"
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise UserError(
            f"{path}{f':{line + 1}' if line is not None else ''}: invalid YAML ({getattr(e, 'problem', e)})"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level")
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for part in parts[:-1]:
        nxt = cur.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise UserError(f"cannot set {dotted!r}: {part!r} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def describe_validation_error(e: ValidationError, source: str) -> str:
    msgs = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msgs.append(f"unknown config key {key!r}")
        else:
            msgs.append(f"config key {key!r}: {err['msg']}")
    return f"{source}: " + "; ".join(msgs)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def changed_items(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) wherever two nested dicts differ (lists compared whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in list(old) + [k for k in new if k not in old]:
            out += changed_items(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def changed_keys(old: Any, new: Any) -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as ``key: old -> new``."""
    return [f"{key}: {o!r} -> {n!r}" for key, o, n in changed_items(old, new)]


def settable_default(cfg: BaseModel, dotted: str) -> bool:
    """Whether ``dotted`` names a field of ``cfg`` left at its default that ``--set dotted=VALUE`` would change alone:
    a field of the current schema, in sections the config gave or that are their class's plain defaults (a section
    built from one ``--set`` key gets its class's defaults, not a customised default's: lm_guided's writer.train)."""
    *sections, leaf = dotted.split(".")
    cur: Any = cfg
    for part in sections:
        if not isinstance(cur, BaseModel) or part not in type(cur).model_fields:
            return False
        section = getattr(cur, part)
        if part not in cur.model_fields_set and not _plain_default(section):
            return False
        cur = section
    return isinstance(cur, BaseModel) and leaf in type(cur).model_fields and leaf not in cur.model_fields_set


def _plain_default(section: Any) -> bool:
    try:
        return isinstance(section, BaseModel) and section.model_dump() == type(section)().model_dump()
    except ValidationError:  # a section class with required fields
        return False


def as_set_value(value: Any) -> str:
    """A value written the way ``--set key=VALUE`` reads it back (YAML, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return text.removesuffix("\n...\n").strip()


def restoring_sets(recorded: dict[str, Any], current: dict[str, Any], cfg: BaseModel, prefix: str = "") -> list[str]:
    """``--set KEY=RECORDED`` (shell-quoted) for each key under ``prefix`` whose recorded value differs from the
    current record's because ``cfg`` left it at a default that moved since (a newer cotbridge): setting it back
    resumes as recorded. Keys only one side has get none (nothing to set, or nothing to set back)."""
    sets = []
    for key, was, _ in changed_items(recorded, current):
        name = key[len(prefix) :]
        if key.startswith(prefix) and _has(recorded, key) and settable_default(cfg, name):
            sets.append("--set " + shlex.quote(f"{name}={as_set_value(was)}"))
    return sets


def _has(data: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def describe_changes(changes: list[str], most: int = 4) -> str:
    shown = "; ".join(changes[:most])
    return shown + (f"; and {len(changes) - most} more" if len(changes) > most else "")
