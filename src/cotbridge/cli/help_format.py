"""How ``--help`` reads: arguments by their metavar alone (no ``<str>``), and a command's config keys listed
from its pydantic model when the help is rendered, so the list cannot drift from the code.

Each key shows as ``key=default`` (what ``--set`` takes, defaults in YAML) with the comment written next to the
field in the config class. A command's options that stand for config keys (``OPTIONS``: option name -> dotted
key) take their help from the same comment, with the default and, where the key names a registered thing, the
names registered now (``CHOICES``: dotted key -> "module:REGISTRY"): the help is written once, in the config class.
So is the range: a numeric option that stands for a key is checked against the key's ``Field`` bounds while the
command line is parsed, and every range-checked option (these and :func:`~cotbridge.cli.options.in_range`'s) shows
its range in ``--help``.
"""

from __future__ import annotations

import importlib
import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable
from typing import Any

import click
from typer.core import TyperCommand

from cotbridge.cli.options import check_environment, checked, data_dir_check
from cotbridge.errors import range_short


class Command(TyperCommand):
    """Typer's command, with arguments listed by their metavar only (Typer appends a Python type, ``FILE <str>``)."""

    config: str = ""  # "module:Class" whose keys the options stand for
    options: dict[str, str] = {}  # option (parameter) name -> dotted config key
    choices: dict[str, str] = {}  # dotted config key -> "module:NAMES" (a Registry, or a tuple/list of names)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # a number standing for a config key takes the key's range, checked at parse time
            if param.name in self.options and param.callback is None and is_numeric(param):
                param.callback = key_range(self.config, self.options[param.name])
            elif param.name == "data_dir" and param.callback is None:  # every --data-dir must name a folder
                param.callback = data_dir_check

    def invoke(self, ctx: Any) -> Any:
        # here, once the command line is parsed, so that `--help` and usage errors still answer under a bad value
        check_environment()
        return super().invoke(ctx)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in self.options:  # the key's range is in the key's help
                record = (record[0], option_help(self.config, self.options[param.name], self.choices))
            elif param_bounds(param):
                record = (record[0], f"{record[1]} [{range_short(param_bounds(param))}]".strip())  # type: ignore[arg-type]
            if param.param_type_name == "argument":
                args.append((param.metavar or param.name.upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def with_settings(
    config: str, note: str = "", options: dict[str, str] | None = None, choices: dict[str, str] | None = None
) -> type[Command]:
    """A command class whose help ends with the keys of ``config`` ("module:Class", imported only for --help), and
    whose ``options`` (parameter name -> dotted key) take their help from those keys' comments."""

    class SettingsCommand(Command):
        def format_epilog(self, ctx: Any, formatter: Any) -> None:
            super().format_epilog(ctx, formatter)
            module, _, name = config.partition(":")
            cls = getattr(importlib.import_module(module), name)
            title = "Settings (for --set KEY=VALUE or the --config YAML; defaults shown)"
            with formatter.section(title):
                if note:
                    formatter.write_text(note)
                    formatter.write_paragraph()
                formatter.write_dl(config_keys(cls))

    SettingsCommand.config, SettingsCommand.options = config, dict(options or {})
    SettingsCommand.choices = dict(choices or {})
    return SettingsCommand


def is_numeric(param: click.Parameter) -> bool:
    """Whether an option takes an int or a float (Typer keeps the annotation, Optional stripped; click a type)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation in (int, float)
    return isinstance(getattr(param, "type", None), (click.types.IntParamType, click.types.FloatParamType))


def param_bounds(param: click.Parameter) -> dict[str, float] | None:
    """The range an option is checked against at parse time (None: it is not range-checked)."""
    bounds = getattr(param.callback, "bounds", None)
    return bounds() if bounds is not None else None


def key_range(config: str, dotted: str) -> Callable[..., Any]:
    """The parse-time check (a click callback) of an option that stands for ``dotted`` of ``config``
    ("module:Class"): the key's own Field bounds, read (and the config imported) only when the option is given."""

    def check(ctx: Any, param: click.Parameter, value: Any) -> Any:
        return value if value is None else checked(param, value, check.bounds(), f"config key {dotted}")  # type: ignore[attr-defined]

    def bounds() -> dict[str, float]:
        from cotbridge.config import field_bounds

        cls, leaf = key_field(load_object(config), dotted)
        return field_bounds(cls.model_fields[leaf])

    check.bounds = bounds  # type: ignore[attr-defined]
    return check


def load_object(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def key_field(cls: Any, dotted: str) -> tuple[Any, str]:
    """(the model class holding the last part of ``dotted``, that field's name); KeyError if there is none."""
    *sections, leaf = dotted.split(".")
    for part in sections:
        cls = cls.model_fields[part].annotation
    if leaf not in cls.model_fields:
        raise KeyError(dotted)
    return cls, leaf


def option_help(config: str, dotted: str, choices: dict[str, str]) -> str:
    """An option's help: the comment beside its config key, the names it takes now, and its default."""
    cls, leaf = key_field(load_object(config), dotted)
    text = field_comments(cls).get(leaf, "")
    if dotted in choices:
        names = load_object(choices[dotted])
        names = names.names() if hasattr(names, "names") else list(names)
        text = f"{text}; one of: {', '.join(names)}" if text else f"one of: {', '.join(names)}"
    field = cls.model_fields[leaf]
    default = field.get_default(call_default_factory=True)
    if default is not None and default is not False and not hasattr(default, "model_dump"):
        text += f" [default: {yaml_value(default)}]"
    return f"{text}{field_range(field)} (config: {dotted})".strip()


def field_range(field: Any) -> str:
    """`` [0<=x<=1]`` for a bounded config field (with its other choices: `` [x>=1 or auto]``), else ""."""
    from cotbridge.config import field_bounds, literal_choices

    bounds = field_bounds(field)
    if not bounds:
        return ""
    others = "".join(f" or {yaml_value(choice)}" for choice in literal_choices(field.annotation))
    return f" [{range_short(bounds)}{others}]"


def config_flags(given: dict[str, Any], options: dict[str, str]) -> dict[str, Any]:
    """The options given on the command line as {dotted key: value}; an option left out (None: every option
    defaults to it, flags included) leaves the config's value alone."""
    return {options[name]: value for name, value in given.items() if name in options and value is not None}


def config_keys(cls: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(``key=default``, comment) for every field of a pydantic model; nested models become dotted keys."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    comments = field_comments(cls)
    rows: list[tuple[str, str]] = []
    for name, field in cls.model_fields.items():
        key = prefix + name
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            rows += config_keys(nested, key + ".")
            continue
        comment = (comments.get(name, "") + field_range(field)).strip()
        if field.default is PydanticUndefined and field.default_factory is None:
            rows.append((key, ("(required) " + comment).strip()))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((f"{key}={yaml_value(default)}", comment))
    return rows


def yaml_value(value: Any) -> str:
    """``value`` as it would be written after ``--set key=`` (YAML flow style)."""
    import yaml

    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line of a class (and its base classes), else the comment lines just above it."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name in vars(klass).get("__annotations__", {}):  # a redefined field drops the base class's comment
            comments.pop(name, None)
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        comments.update(_class_body_comments(source))
    return comments


def _class_body_comments(source: str) -> dict[str, str]:
    """Field name -> comment, for the statements directly in the body of the class in ``source``."""
    found: dict[str, str] = {}
    depth, field, above, line_start, prev_kind = 0, None, [], True, None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            kind = tok.type
            if kind == tokenize.INDENT:
                depth += 1
            elif kind == tokenize.DEDENT:
                depth -= 1
            elif depth != 1:
                continue
            elif kind == tokenize.NAME and line_start:
                field, line_start = tok.string, False
            elif kind == tokenize.COMMENT:
                if field is not None:
                    found.setdefault(field, tok.string.lstrip("#").strip())
                elif line_start:
                    above.append(tok.string.lstrip("#").strip())
            elif kind == tokenize.NEWLINE:
                if field is not None and field not in found and above:
                    found[field] = " ".join(above)
                field, above, line_start = None, [], True
            elif kind == tokenize.NL:
                if line_start and prev_kind != tokenize.COMMENT:  # a blank line ends a comment block
                    above = []
            else:
                line_start = False
            prev_kind = kind
    except (tokenize.TokenError, IndentationError):
        pass
    return found
