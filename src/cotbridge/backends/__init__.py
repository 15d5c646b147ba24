"""Generation backends, looked up by name: ``get_backend("hf", model=...)``."""

from __future__ import annotations

from typing import Any

from cotbridge.backends import hf, openai_api, oracle, reference, replay, vllm_backend  # noqa: F401  (registration side effects)
from cotbridge.backends.base import BACKENDS, Backend, Completion, Request
from cotbridge.backends.secrets import check_no_literal_secrets

__all__ = ["BACKENDS", "Backend", "Completion", "Request", "get_backend"]


def get_backend(kind: str, *, where: str | None = None, **kwargs: Any) -> Backend:
    """The backend registered as ``kind``. Its options (all but ``model``) are checked before it is built: a literal
    secret, an option it does not take (a typo such as ``error_rat`` used to be ignored) or a value of the wrong type
    is one error naming the key, under ``where`` (the config key holding them, e.g. "teacher.options")."""
    given = {"model": kwargs.pop("model")} if "model" in kwargs else {}
    check_no_literal_secrets(kwargs, where)
    return BACKENDS.build(kind, kwargs, where=where, **given)  # type: ignore[no-any-return]
