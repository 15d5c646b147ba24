"""Typed configs loaded from YAML with command-line overrides (default < YAML < --set < flags).

Unknown keys are errors that name the key and where it came from; a number outside its key's range (the ``Field``
bounds ge/gt/le/lt every numeric key carries) is refused naming the key and the whole range.
"""

from __future__ import annotations

import shlex
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from cotbridge.errors import UserError, range_words

C = TypeVar("C", bound="StrictModel")


SEED_MAX = 2**32 - 1  # numpy's (transformers.set_seed seeds it): every seed key is in [0, SEED_MAX]
TEMPERATURE_MAX = 2  # OpenAI's ceiling; sampling above it is noise


class StrictModel(BaseModel):
    # inf and nan are refused in every float key: no setting means "forever" or "undefined" (null does, where allowed)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
        try:
            parsed = parse_yaml(value)
        except yaml.YAMLError as e:
            raise UserError(
                f"--set {item!r}: not a YAML value ({yaml_problem(e)}); to pass it as text, quote it: "
                f"--set \"{key.strip()}='...'\""
            ) from None
        set_dotted(data, key.strip(), parsed)
        source = f"{source} + --set"
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, source, cls)) from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last one silently, so a
    setting written twice (one forgotten further down) would quietly override the other."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then a key of base: an override, allowed
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the safe loader refuses it itself, below
                continue
            if first is not None:
                problem = f"duplicate key {key!r} (first on line {first.line + 1}): keep one"
                raise DuplicateKeyError(None, None, problem, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with :class:`StrictLoader`: the one loader of config files and ``--set`` values."""
    return yaml.load(text, Loader=StrictLoader)


def yaml_problem(e: yaml.YAMLError) -> str:
    """What is wrong, in PyYAML's words, without its position (the caller names the file and line)."""
    return str(getattr(e, "problem", None) or e)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else f"{path}"
        problem = yaml_problem(e) if isinstance(e, DuplicateKeyError) else f"invalid YAML ({yaml_problem(e)})"
        raise UserError(f"{where}: {problem}") from None
    if data is None:  # an empty file (or comments only) would run every default: 1000 paid questions, a training
        raise UserError(f"{path} is empty: write its config keys in it (a file holding {{}} takes every default)")
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


RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number")


def describe_validation_error(e: ValidationError, source: str, cls: type[BaseModel] | None = None) -> str:
    """One message per key that failed: an unknown key by name, a number out of range with the key's whole range (and
    its other choices: batch_size's 'auto'); a key whose union tried several types gets their complaints joined."""
    unknown, ranges, other = [], {}, {}
    for err in e.errors():
        key, field = resolve_loc(cls, err["loc"]) if cls is not None else (".".join(map(str, err["loc"])), None)
        bounds = field_bounds(field) if field is not None else {}
        if err["type"] == "extra_forbidden":
            unknown.append(f"unknown config key {key!r}")
        elif err["type"] in RANGE_ERRORS and bounds:
            choices = "".join(f" or {choice!r}" for choice in literal_choices(field.annotation))  # type: ignore[union-attr]
            finite = "a finite number " if err["type"] == "finite_number" else ""
            ranges[key] = f"{err['input']!r} is out of range: must be {finite}{range_words(bounds)}{choices}"
        elif err["msg"] not in other.setdefault(key, []):
            other[key].append(err["msg"])
    msgs = unknown + [
        f"config key {key!r}: {ranges.get(key) or ', or '.join(other[key])}" for key in {**other, **ranges}
    ]
    return f"{source}: " + "; ".join(msgs)


def _members(annotation: Any) -> list[Any]:
    """The types a field's annotation allows: unions and Optional flattened, Annotated unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def literal_choices(annotation: Any) -> list[Any]:
    """The Literal values a field's annotation allows beside its numbers (batch_size: 'auto')."""
    return [v for m in _members(annotation) if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]


def field_bounds(field: FieldInfo) -> dict[str, float]:
    """A config field's numeric range {ge, gt, le, lt} (empty: none), from ``Field(ge=...)`` or from the Annotated
    number inside a union (``Annotated[int, Field(ge=1)] | Literal["auto"]``)."""
    metadata = list(field.metadata)
    annotation = field.annotation
    for arg in typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ():
        if typing.get_origin(arg) is typing.Annotated:
            for meta in typing.get_args(arg)[1:]:
                metadata += getattr(meta, "metadata", [meta])
    return {
        op: getattr(m, op) for m in metadata for op in ("ge", "gt", "le", "lt") if getattr(m, op, None) is not None
    }


def resolve_loc(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, FieldInfo | None]:
    """A pydantic error location as the dotted key a user writes (union members' tags such as 'constrained-int' or
    "literal['auto']" dropped), and the field it ends at (None where it ends in a list item or a mapping's value)."""
    parts: list[str] = []
    field: FieldInfo | None = None
    current: list[Any] = [cls]
    for part in loc:
        for t in (m for c in current for m in _members(c)):
            origin, args = typing.get_origin(t), typing.get_args(t)
            if isinstance(part, str) and isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
                field = t.model_fields[part]
                current = [field.annotation]
                break
            if isinstance(part, int) and origin in (list, tuple, set, frozenset) and args:
                field, current = None, [args[0]]
                break
            if isinstance(part, str) and origin is dict and len(args) == 2:
                field, current = None, [args[1]]
                break
        else:
            continue  # a union member's tag: not part of the key
        parts.append(str(part))
    return ".".join(parts) or ".".join(map(str, loc)), field


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# Backend options that say how requests travel, not what comes back: changing them (a server replica added, more
# concurrency, a longer timeout) leaves a run's outputs valid, so no settings check counts them.
TRANSPORT_OPTIONS = frozenset(
    {
        "base_url",
        "endpoints",
        "concurrency",
        "timeout_s",
        "max_retries",
        "endpoint_retries",
        "endpoint_fail_after",
        "endpoint_pause_s",
        "rpm",
        "tpm",
        "backoff_base_s",
        "backoff_max_s",
    }
)


def changed_items(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) wherever two nested dicts differ (lists compared whole); a backend's
    ``options`` differing only in TRANSPORT_OPTIONS do not."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        transport = prefix == "options." or prefix.endswith(".options.")
        for key in list(old) + [k for k in new if k not in old]:
            if transport and key in TRANSPORT_OPTIONS:
                continue
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
