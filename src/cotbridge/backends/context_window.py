"""A local model's context window, and what a batch of requests does about it. Nothing is ever truncated:

- a request whose prompt does not fit (or leaves no room for one new token) is not generated; its completions
  have empty text, finish_reason ``context_overflow`` and ``extra["skipped"]`` saying why, with both numbers;
- a request whose prompt fits but whose ``max_tokens`` does not gets ``max_tokens`` lowered to what fits (its
  completion then ends with finish_reason ``length`` as usual), and one warning says how many were capped.

``cotbridge serve`` refuses such requests instead, before any generation, in vLLM's words (``check_served``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from cotbridge.backends.base import CONTEXT_OVERFLOW, Completion, Request
from cotbridge.backends.openai_wire import ROUTES, BadRequest

log = logging.getLogger(__name__)

# Where configs keep the longest sequence of positions a model was built for (Llama/Qwen/..., GPT-2, some others).
WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length")
# transformers' tokenizer.model_max_length is int(1e30) when the tokenizer records no limit: not a window.
NO_LIMIT = 10**8


def context_window(model: Any, tokenizer: Any = None) -> int | None:
    """The most positions ``model`` takes (None: unknown, nothing is checked). Decoder-only: the text config's
    ``max_position_embeddings`` / ``n_positions`` / ``max_sequence_length``, else a real (not sentinel)
    ``tokenizer.model_max_length``. Encoder-decoder: ``max_position_embeddings`` only (BART's learned positions);
    T5's relative positions have no window (its configs' ``n_positions`` is read by nothing), so none is checked."""
    config = model.config
    if config.is_encoder_decoder:
        return _positive_int(getattr(config, "max_position_embeddings", None))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in WINDOW_KEYS:
        value = _positive_int(getattr(text, key, None))
        if value is not None:
            return value
    limit = _positive_int(getattr(tokenizer, "model_max_length", None))
    return limit if limit is not None and limit < NO_LIMIT else None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def room_for(prompt_tokens: int, window: int, encoder_decoder: bool = False) -> int:
    """How many new tokens fit beside a prompt of ``prompt_tokens`` (below 1: the prompt does not fit). A decoder-only
    model holds prompt and completion in one window; an encoder-decoder model reads the prompt in its encoder, and
    its decoder holds the start token and the completion."""
    if encoder_decoder:
        return window - 1 if prompt_tokens <= window else 0
    return window - prompt_tokens


def overflow_reason(prompt_tokens: int, window: int) -> str:
    if prompt_tokens > window:
        return f"prompt of {prompt_tokens} tokens does not fit the context window of {window} tokens"
    return f"prompt of {prompt_tokens} tokens fills the context window of {window} tokens: no room for a new token"


@dataclass
class Fit:
    """``requests`` with ``max_tokens`` lowered where it did not fit; ``skipped``: index -> why it is not generated."""

    requests: list[Request]
    skipped: dict[int, str] = field(default_factory=dict)
    capped: int = 0


def fit_to_window(
    requests: list[Request], prompt_tokens: list[int], window: int | None, encoder_decoder: bool = False
) -> Fit:
    """Which requests are generated, and with how many new tokens at most (see the module's docstring)."""
    if window is None:
        return Fit(list(requests))
    fit = Fit([])
    for i, (r, n) in enumerate(zip(requests, prompt_tokens)):
        room = room_for(n, window, encoder_decoder)
        if room < 1:
            fit.skipped[i] = overflow_reason(n, window)
        elif r.max_tokens > room:
            r = replace(r, max_tokens=room)
            fit.capped += 1
        fit.requests.append(r)
    if fit.capped:
        log.warning(
            "%d of %d requests asked for more new tokens than fit the context window of %d tokens beside their "
            "prompt: their max_tokens was lowered to what fits (those completions may end with finish_reason length)",
            fit.capped,
            len(requests),
            window,
        )
    if fit.skipped:
        longest = max(prompt_tokens[i] for i in fit.skipped)
        log.warning(
            "%d of %d requests not generated: their prompts (up to %d tokens) do not fit the context window of %d "
            "tokens (finish_reason %s, the reason in extra['skipped'])",
            len(fit.skipped),
            len(requests),
            longest,
            window,
            CONTEXT_OVERFLOW,
        )
    return fit


def skipped_completions(req: Request, reason: str) -> list[Completion]:
    """The ``n`` completions of a request that was not generated."""
    extra: dict[str, Any] = {"skipped": reason, **({"token_ids": []} if req.token_ids else {})}
    return [Completion("", CONTEXT_OVERFLOW, 0, 0, 0.0, dict(extra)) for _ in range(req.n)]


def check_served(backend: Any, route: str, body: dict[str, Any], reqs: list[Request]) -> None:
    """``cotbridge serve``: refuse (400) a request that does not fit the served model's window, before any
    generation, as vLLM does: a prompt longer than the window (or filling it while asking for new tokens) names
    ``prompt`` / ``messages``; an explicit ``max_tokens`` that does not fit beside the prompt names itself. A
    ``max_tokens`` the body did not set is lowered to what fits (vLLM's default: the rest of the window)."""
    window = getattr(backend, "context_window", None)
    if window is None or not hasattr(backend, "encode"):
        return
    what = "messages" if route == ROUTES["chat"] else "prompt"
    asked = next((k for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), None)
    encoder_decoder = bool(backend.model.config.is_encoder_decoder)
    for r, ids in zip(reqs, backend.encode(reqs)):
        n = len(ids)
        room = room_for(n, window, encoder_decoder)
        if (r.max_tokens > 0 and room < 1) or (r.max_tokens == 0 and n > window):
            raise BadRequest(
                f"This model's maximum context length is {window} tokens. However, you requested {n} tokens in the "
                f"{what}" + (", which leaves no room for a completion" if n <= window else "") + f". Please reduce "
                f"the length of the {what}.",
                what,
            )
        if r.max_tokens > room:
            if asked is not None:
                raise BadRequest(
                    f"This model's maximum context length is {window} tokens. However, you requested "
                    f"{n + r.max_tokens} tokens ({n} in the {what}, {r.max_tokens} in the completion). Please reduce "
                    f"the length of the {what} or completion.",
                    asked,
                )
            r.max_tokens = room
