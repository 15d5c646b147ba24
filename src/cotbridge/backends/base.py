"""The backend interface: a batch of requests → n completions each, with finish_reason and usage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cotbridge.registry import Registry


@dataclass
class Request:
    """A prompt (raw text) or chat messages; ``continue_final`` continues the last assistant message."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    continue_final: bool = False
    first_sample: int = 0  # the samples are indices first_sample .. first_sample+n-1 (cache keys, seeds)
    # A prompt given as token ids (serve's /completions takes them); ``prompt`` then holds their decoded text, for
    # logs and for backends that read only text. Only a backend with ``encode`` (hf) uses the ids themselves.
    prompt_ids: list[int] | None = None
    token_ids: bool = False  # also return each completion's token ids, in extra["token_ids"] (serve's log-probs)
    meta: dict[str, Any] = field(
        default_factory=dict
    )  # task/example info for replay & reference; not sent, not cached

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a Request takes exactly one of prompt or messages")


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string), "length", or CONTEXT_OVERFLOW (not generated)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# The finish_reason of a request that was not generated because its prompt does not fit the model's context window
# (backends/context_window.py): its text is empty and ``extra["skipped"]`` says why, with both numbers. Evaluation
# counts it as skipped (and wrong), teaching records it and curation never trains on it.
CONTEXT_OVERFLOW = "context_overflow"


def skipped_reason(c: Completion | None) -> str | None:
    """Why ``c`` was not generated (a prompt that does not fit the context window), or None: it was."""
    if c is None or c.finish_reason != CONTEXT_OVERFLOW:
        return None
    return str(c.extra.get("skipped") or "the prompt does not fit the model's context window")


# Called as soon as one request's completions exist (before the whole batch returns), so callers
# can persist paid results immediately: on_result(request_index, completions).
ResultCallback = Callable[[int, "list[Completion]"], None]


class Backend(Protocol):
    kind: str  # registry name, part of cache keys
    model_id: str

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        """One list of ``request.n`` completions per request, in request order."""
        ...


BACKENDS: Registry[Callable[..., Backend]] = Registry("backend")


class GenerationInterrupted(RuntimeError):
    """A generation stopped early because its caller no longer wants the result. A backend that can stop early (hf)
    has an ``interrupt`` attribute: a caller (``cotbridge serve``: client gone, or shutting down) sets it to a check
    polled while generating, and a check that turns true ends ``generate`` with this error."""


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
