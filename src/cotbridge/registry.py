"""Name → object registries with "did you mean" errors (lm-evaluation-harness style)."""

from __future__ import annotations

import difflib
import inspect
import os
import types
import typing
from collections import abc
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from cotbridge.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection; registering twice is a bug, looking up a typo gets suggestions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form: ``@REGISTRY.register("name")``."""
        return lambda item: self.add(name, item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(unknown_name_message(self.kind, name, self._items)) from None

    def build(self, name: str, options: Mapping[str, Any], *, where: str | None = None, **given: Any) -> Any:
        """``name``'s factory called with ``given`` (the caller's own arguments) and ``options`` (the user's, checked
        first: see check_options); ``where`` is the config key holding them, for the error."""
        factory: Any = self.get(name)
        check_options(factory, options, f"{name} {self.kind}", where, given)
        return factory(**given, **options)

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)


def unknown_name_message(kind: str, name: str, known: object) -> str:
    choices = sorted(str(k) for k in known)  # type: ignore[union-attr]
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(choices)})"


# -- options checked against the constructor they are passed to ------------------------------------------------
# Options come from YAML / --set, so a wrong type used to surface as a TypeError deep inside a constructor
# ("'<=' not supported between 'float' and 'str'"). They are checked against the signature first.


def check_options(
    factory: Callable[..., Any], options: Mapping[str, Any], what: str, where: str | None = None, given: Any = ()
) -> None:
    """Refuse, as one UserError, an option ``factory`` does not take, a keyword it needs that is missing, or a value
    of the wrong type for its annotation. ``what`` names the thing built ("reference backend"); ``where`` is the
    config key holding the options ("teacher.options"); ``given`` are the arguments the caller passes itself."""
    params = inspect.signature(factory).parameters  # follows __wrapped__ (a factory wrapping a class)
    label = (lambda k: f"{where}.{k}") if where else (lambda k: f"{what} option {k!r}")
    for name, p in params.items():
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and name not in options and name not in given:
            raise UserError(
                f"the {what} needs the option {name!r}" + (f" (--set {where}.{name}=...)" if where else "")
            )
    named = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in given]
    # **kwargs named other than "_" take arbitrary options the factory checks itself; "_" only swallows extras
    if not any(p.kind == p.VAR_KEYWORD and n != "_" for n, p in params.items()):
        for key in options:
            if key not in named:
                if not named:
                    raise UserError(f"{label(key)}: the {what} takes no options; remove it")
                raise UserError(f"{label(key)}: " + unknown_name_message(f"{what} option", str(key), named))
    hints = _type_hints(inspect.unwrap(factory))
    for key, value in options.items():
        if key in hints and key not in given:
            wrong = _mismatch(value, hints[key], label(key))
            if wrong is not None:
                at, expected, got = wrong
                raise UserError(f"{at}: expected {expected}, got {got!r}")


def _type_hints(target: Any) -> dict[str, Any]:
    """The resolved annotations of ``target``'s parameters (a class: its ``__init__``'s); one that cannot be resolved
    (a name imported only for type checkers) is left out, so it is not checked."""
    fn = target.__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  (resolve them one by one below)
        pass
    out = {}
    for name, ann in getattr(fn, "__annotations__", {}).items():
        try:
            out[name] = eval(ann, getattr(fn, "__globals__", {})) if isinstance(ann, str) else ann  # noqa: S307
        except Exception:  # noqa: BLE001  (unresolvable: unchecked)
            continue
    return out


def _mismatch(value: Any, tp: Any, at: str) -> tuple[str, str, Any] | None:
    """None when ``value`` fits ``tp``, else (where, what was expected, the value found), as deep as it can tell."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, (TypeVar, str)):
        return None
    if origin in (typing.Union, types.UnionType):
        if any(_mismatch(value, a, at) is None for a in args):
            return None
        # a value of one member's shape (a list for str | list[str]) is told what is wrong inside it
        shaped = [a for a in args if _shape(a) is not None and _fits_shape(value, _shape(a))]
        if len(shaped) == 1:
            return _mismatch(value, shaped[0], at)
        return at, " or ".join(_describe(a) for a in args), value
    if origin is typing.Literal:
        return None if value in args else (at, _describe(tp), value)
    shape = _shape(tp)
    if shape is None:
        try:
            return None if isinstance(value, tp) else (at, _describe(tp), value)
        except TypeError:  # not checkable at run time (a Protocol, Callable[...]): trust it
            return None
    if not _fits_shape(value, shape):
        return at, _describe(tp), value
    if shape is list and args:
        for i, item in enumerate(value):
            wrong = _mismatch(item, args[0], f"{at}[{i}]")
            if wrong is not None:
                return wrong
    if shape is dict and len(args) == 2:
        for k, item in value.items():
            wrong = _mismatch(k, args[0], at) or _mismatch(item, args[1], f"{at}.{k}")
            if wrong is not None:
                return wrong
    return None


def _shape(tp: Any) -> type | None:
    """The plain type a value of ``tp`` must be, for the types options take; None for anything else."""
    origin = typing.get_origin(tp) or tp
    if origin is type(None):
        return type(None)
    if origin in (bool, int, float, str, list, tuple, dict) or origin is os.PathLike:
        return origin
    if isinstance(origin, type) and issubclass(origin, os.PathLike):
        return os.PathLike
    if origin in (abc.Mapping, abc.MutableMapping):
        return dict
    if origin in (abc.Sequence, abc.MutableSequence):
        return list
    return None


def _fits_shape(value: Any, shape: type) -> bool:
    if shape is bool:
        return isinstance(value, bool)
    if shape is int:  # YAML's true is not a count
        return isinstance(value, int) and not isinstance(value, bool)
    if shape is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if shape is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    if shape is dict:
        return isinstance(value, abc.Mapping)
    if shape is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, shape)


_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", type(None): "null"}


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    shape = _shape(tp)
    if shape in _WORDS:
        return _WORDS[shape]
    if shape is os.PathLike:
        return "a path"
    if shape in (list, tuple):
        return "a list"
    if shape is dict:
        return "a mapping"
    return f"a {getattr(tp, '__name__', tp)}"
