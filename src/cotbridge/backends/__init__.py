"""Generation backends, looked up by name: ``get_backend("hf", model=...)``."""

from __future__ import annotations

import inspect
from typing import Any

from cotbridge.backends import hf, openai_api, oracle, reference, replay, vllm_backend  # noqa: F401  (registration side effects)
from cotbridge.backends.base import BACKENDS, Backend, Completion, Request
from cotbridge.errors import UserError
from cotbridge.registry import unknown_name_message

__all__ = ["BACKENDS", "Backend", "Completion", "Request", "get_backend"]


def get_backend(kind: str, **kwargs: Any) -> Backend:
    """The backend registered as ``kind``; an option it does not take is an error naming it (a typo such as
    ``error_rat`` used to be ignored)."""
    factory = BACKENDS.get(kind)
    check_options(kind, factory, kwargs)
    return factory(**kwargs)


def check_options(kind: str, factory: Any, options: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    for name, p in params.items():
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and name not in options:
            raise UserError(f"the {kind} backend needs the option {name!r} (--set teacher.options.{name}=...)")
    named = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind == p.VAR_KEYWORD and n != "_" for n, p in params.items()):
        return  # the backend takes arbitrary options and checks them itself
    for key in options:
        if key not in named:
            known = [n for n in named if n != "model"]
            raise UserError(unknown_name_message(f"{kind} backend option", key, known))
