"""Generation backends, looked up by name: ``get_backend("hf", model=...)``."""

from __future__ import annotations

from typing import Any

from cotbridge.backends import hf, openai_api, oracle, reference, replay, vllm_backend  # noqa: F401  (registration side effects)
from cotbridge.backends.base import BACKENDS, Backend, Completion, Request

__all__ = ["BACKENDS", "Backend", "Completion", "Request", "get_backend"]


def get_backend(kind: str, **kwargs: Any) -> Backend:
    return BACKENDS.get(kind)(**kwargs)
