"""Request bodies as ``cotbridge serve`` reads them (the server's half of the wire format in openai_wire.py):
``parse_body`` (bytes → JSON, refusing hostile bodies), ``check_model``, ``check_parameters`` (a parameter the
server does not act on is a 400 naming it), ``parse_requests`` (a body → Requests, prompts as text or token ids) and
``parse_extras`` (log-probs, echo, vLLM's prompt_logprobs, streaming).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cotbridge.backends.base import Request
from cotbridge.backends.openai_wire import ROUTES, BadRequest

MAX_JSON_DEPTH = 64  # a chat body nests ~5 levels; deeper ones only exhaust the stack (json.loads recurses)


def parse_body(raw: bytes) -> Any:
    """The JSON body, or BadRequest: not JSON, nested deeper than MAX_JSON_DEPTH, or holding a lone surrogate."""
    try:
        body = json.loads(raw)
    except RecursionError:  # json.loads recurses per level: 100,000 brackets reach the interpreter's limit
        raise BadRequest(f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    # Iterative, so checking depth cannot itself recurse; `top` is the top-level field, named in the error.
    stack: list[tuple[Any, int, str | None]] = [(body, 0, None)]
    while stack:
        node, depth, top = stack.pop()
        if isinstance(node, str):
            if not node.isascii():
                try:
                    node.encode()
                except UnicodeEncodeError:  # a "\ud800" escape: a backend's tokenizer cannot take it
                    raise BadRequest(
                        "request body holds a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF escape)", top
                    ) from None
            continue
        if isinstance(node, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequest(f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)", top)
            if isinstance(node, dict):
                for k, v in node.items():
                    key_top = top if depth else k
                    stack.append((k, depth + 1, key_top))
                    stack.append((v, depth + 1, key_top))
            else:
                stack.extend((v, depth + 1, top) for v in node)
    return body


def check_model(body: Any, served: str, any_model: bool) -> str | None:
    """The model ``body`` asks for (None: not named). As the OpenAI API, an unknown model is a 404, not a stand-in;
    ``any_model`` answers any name."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    asked = body.get("model")
    if asked is not None and not isinstance(asked, str):
        raise BadRequest(f"model must be a string, got {asked!r}", "model")
    if asked is not None and asked != served and not any_model:
        raise _unknown_model(asked, served)
    return asked


def _unknown_model(asked: str, served: str) -> BadRequest:
    return BadRequest(
        f"The model {asked!r} does not exist: this server serves {served!r}", "model", 404, "model_not_found"
    )


def check_model_error(asked: str, served: str) -> dict[str, Any]:
    """The 404 body for a model this server does not serve (``GET /v1/models/{id}``)."""
    return _unknown_model(asked, served).body()


def _num(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise BadRequest(f"{key} must be a number in [{lo}, {hi}], got {v!r}", key)
    return float(v)


def _int(body: dict, key: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{key} must be an integer in [{lo}, {hi}], got {v!r}", key)
    return v


def _bool(body: dict, key: str) -> bool:
    v = body.get(key)
    if v is not None and not isinstance(v, bool):
        raise BadRequest(f"{key} must be true or false, got {v!r}", key)
    return bool(v)


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for p in content:
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                raise BadRequest(f"{where}: only text content parts are supported", "messages")
            parts.append(p["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise BadRequest(f"{where}: content must be a string or a list of text parts", "messages")


# What the server reads of each route's body. A parameter outside these is refused with a 400 naming it, never
# ignored with a 200 (a client that asks for something gets it, or hears why not); NEUTRAL ones are taken only at
# the value that changes nothing.
SERVED_KEYS = {
    "chat": {"model", "messages", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed"}
    | {"logprobs", "top_logprobs", "stream", "stream_options", "continue_final_message", "add_generation_prompt"},
    "completions": {"model", "prompt", "n", "temperature", "top_p", "max_tokens", "stop", "seed", "logprobs", "echo"}
    | {"stream", "stream_options", "prompt_logprobs"},
}
NEUTRAL = {  # parameter -> (is it at its no-op value?, that value, as said in the refusal)
    "user": (lambda v: v is None or isinstance(v, str), "any string (it is only a label)"),
    "metadata": (lambda v: v is None or isinstance(v, dict), "an object (it is only a label)"),
    "frequency_penalty": (lambda v: v in (None, 0), "0"),
    "presence_penalty": (lambda v: v in (None, 0), "0"),
    "repetition_penalty": (lambda v: v in (None, 1), "1"),
    "logit_bias": (lambda v: not v, "{}"),
    "best_of": (lambda v: v in (None, 1), "1"),
    "suffix": (lambda v: v in (None, ""), "null"),
    "response_format": (lambda v: v in (None, {"type": "text"}), '{"type": "text"}'),
}


def check_parameters(route: str, body: dict) -> None:
    """Refuse any parameter this server does not act on, naming it."""
    api = "chat" if route == ROUTES["chat"] else "completions"
    for key, value in body.items():
        if key in SERVED_KEYS[api]:
            continue
        if key in NEUTRAL:
            ok, neutral = NEUTRAL[key]
            if ok(value):
                continue
            raise BadRequest(f"{key} is not supported by this server; only {neutral} is accepted", key)
        raise BadRequest(
            f"unsupported parameter {key!r} for {ROUTES[api]}; this server reads "
            f"{', '.join(sorted(SERVED_KEYS[api]))}",
            key,
        )


@dataclass
class Extras:
    """What a body asks beyond generated text. ``logprobs``: log-probs of each completion token with this many
    alternatives (None: not asked); ``echo``: the prompt comes back before the completion, with its log-probs when
    ``logprobs`` is asked; ``prompt_logprobs``: vLLM's per-prompt-token alternatives by token id; ``stream``: the
    answer as server-sent events, ``include_usage`` adding a final usage chunk."""

    logprobs: int | None = None
    echo: bool = False
    prompt_logprobs: int | None = None
    stream: bool = False
    include_usage: bool = False

    @property
    def scored(self) -> bool:
        return self.logprobs is not None or self.prompt_logprobs is not None


def parse_extras(route: str, body: dict) -> Extras:
    """The log-prob, echo and streaming options of a body at ``route`` (after ``check_parameters``)."""
    from cotbridge.backends.token_logprobs import MAX_TOP

    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise BadRequest("stream_options is only allowed with stream: true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise BadRequest('stream_options takes only {"include_usage": true|false}', "stream_options")
    include_usage = _bool(options or {}, "include_usage")
    if route == ROUTES["chat"]:
        top = _int(body, "top_logprobs", None, 0, MAX_TOP)
        if top is not None and not _bool(body, "logprobs"):
            raise BadRequest("top_logprobs needs logprobs: true", "top_logprobs")
        return Extras(
            logprobs=(top or 0) if _bool(body, "logprobs") else None, stream=stream, include_usage=include_usage
        )
    return Extras(
        logprobs=_int(body, "logprobs", None, 0, MAX_TOP),
        echo=_bool(body, "echo"),
        prompt_logprobs=_int(body, "prompt_logprobs", None, 0, MAX_TOP),
        stream=stream,
        include_usage=include_usage,
    )


def _common(body: dict, default_max_tokens: int) -> dict[str, Any]:
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop must be a string or a list of strings", "stop")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    # 0 new tokens is a request to score the prompt alone (echo / prompt_logprobs), as the completions API allows
    scoring_only = body.get("echo") is True or body.get("prompt_logprobs") is not None
    max_tokens = _int(body, key, default_max_tokens, 0 if scoring_only else 1, 1_000_000)
    seed = _int(body, "seed", 0, -(2**63), 2**63 - 1)
    return dict(
        n=_int(body, "n", 1, 1, 128),
        temperature=_num(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_num(body, "top_p", 1.0, 0.0, 1.0),
        max_tokens=max_tokens,
        stop=stop,
        seed=seed or 0,
    )


def chat_request(body: dict) -> Request:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty list", "messages")
    messages = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{j}] must be an object with a role", "messages")
        messages.append({"role": m["role"], "content": _content(m.get("content"), f"messages[{j}]")})
    continue_final = _bool(body, "continue_final_message")
    if continue_final and messages[-1]["role"] != "assistant":
        raise BadRequest("continue_final_message needs a final assistant message", "continue_final_message")
    if body.get("add_generation_prompt") is not None and _bool(body, "add_generation_prompt") == continue_final:
        raise BadRequest(
            "add_generation_prompt must be the opposite of continue_final_message (a new assistant turn, or the "
            "last one continued)",
            "add_generation_prompt",
        )
    return Request(messages=messages, continue_final=continue_final, **_common(body, 128))


def _is_ids(p: Any) -> bool:
    return isinstance(p, list) and bool(p) and all(isinstance(t, int) and not isinstance(t, bool) for t in p)


def completion_requests(body: dict) -> list[Request]:
    """One Request per prompt: a string, a list of strings, a list of token ids, or a list of such lists (the four
    forms the completions API takes). A token-id prompt keeps its ids in ``prompt_ids``; ``prompt`` is left empty
    for the server to fill with their text."""
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) or _is_ids(prompt) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) or _is_ids(p) for p in prompts):
        raise BadRequest(
            "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids "
            "(each non-empty)",
            "prompt",
        )
    common = _common(body, 16)
    return [
        Request(prompt=p, **common) if isinstance(p, str) else Request(prompt="", prompt_ids=list(p), **common)
        for p in prompts
    ]


def parse_requests(route: str, body: dict) -> list[Request]:
    """The Requests a body at ``route`` (one of ROUTES' values) asks for: one chat, or one per prompt."""
    return [chat_request(body)] if route == ROUTES["chat"] else completion_requests(body)
