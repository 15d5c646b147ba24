"""The OpenAI chat/completions wire format, written once: what ``cotbridge serve`` (server.py), the client
(openai_api.py) and the Batch API files (batch_api.py) send and read.

Client side: ``request_body`` (a Request → the JSON body sent, and written to Batch API input), ``check_shape`` and
``completions_from_body`` (a response body → Completions; ``Malformed`` when it is not a usable completion),
``error_message`` (the message of an error body). Server side: ``parse_body`` (bytes → JSON, refusing hostile
bodies), ``check_model`` and ``parse_requests`` (a body → Requests), ``response_body`` / ``models_body`` (Completions →
the JSON answered), ``error_body`` / ``BadRequest`` (OpenAI-shaped errors naming the field), ``parse_extras`` (what
a body asks beyond text: log-probs, echo, vLLM's prompt_logprobs, streaming). The shapes of log-probs and of a
streamed answer are openai_logprobs.py and openai_stream.py. The client never streams.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cotbridge.backends.base import Completion, Request, truncate_at_stop
from cotbridge.errors import UserError

ROUTES = {"chat": "/chat/completions", "completions": "/completions"}  # below the /v1 prefix
OPENAI_MAX_STOP = 4  # the API takes at most 4 stop strings; the rest are applied locally
MAX_JSON_DEPTH = 64  # a chat body nests ~5 levels; deeper ones only exhaust the stack (json.loads recurses)
# The fields the OpenAI API (and its SDK's create()) names; anything else in a body is an extension (vLLM's
# continue_final_message, add_generation_prompt), which the SDK sends as extra_body.
STANDARD_KEYS = {
    "chat": {"model", "messages", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed"},
    "completions": {"model", "prompt", "n", "temperature", "top_p", "max_tokens", "stop", "seed"},
}


# -- the client's side: request bodies out, response bodies in ------------------------------------------------------
def request_body(
    req: Request,
    *,
    model: str,
    api: str = "chat",
    token_param: str = "max_tokens",
    official: bool = False,
    n: int | None = None,
    sample_offset: int = 0,
) -> dict[str, Any]:
    """The JSON body for ``req`` (``n`` samples starting at sample ``first_sample + sample_offset``). ``official``:
    the body goes to api.openai.com, which cannot continue a final assistant message."""
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        body["messages"] = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt}]
        if req.continue_final:
            if official:
                raise UserError(
                    "the OpenAI API cannot continue a final assistant message (continue_final); "
                    "use a plain prompt or a compatible server such as vLLM"
                )
            body.update(continue_final_message=True, add_generation_prompt=False)  # vLLM / cotbridge serve
    else:
        if req.prompt is None:
            raise UserError(
                "api='completions' takes plain prompts, and this request has chat messages; use api='chat'"
            )
        body["prompt"] = req.prompt
    body.update(n=req.n if n is None else n, temperature=req.temperature, top_p=req.top_p)
    body[token_param] = req.max_tokens
    if req.stop:
        body["stop"] = list(req.stop[:OPENAI_MAX_STOP])
    if req.seed:
        start = req.first_sample + sample_offset  # distinct seeds for distinct sample ranges (caching, top-ups)
        body["seed"] = req.seed if start == 0 else req.seed * 100_003 + start
    return body


def split_extensions(api: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``body`` as (the API's standard fields, the extensions)."""
    keys = STANDARD_KEYS[api]
    return {k: v for k, v in body.items() if k in keys}, {k: v for k, v in body.items() if k not in keys}


class Malformed(Exception):
    """A response body that is not a usable completion (bad JSON, no choices, an error inside a 200)."""


def parse_response(content: bytes) -> dict[str, Any]:
    """A response body's JSON, checked by ``check_shape``."""
    try:
        data = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Malformed(
            f"invalid JSON ({type(e).__name__} at char {getattr(e, 'pos', '?')}, {len(content)} bytes)"
        ) from None
    check_shape(data)
    return data


def check_shape(data: Any) -> None:
    if not isinstance(data, dict):
        raise Malformed(f"expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("error"), dict):
        raise Malformed(f"error in a 200 response: {str(data['error'].get('message'))[:200]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise Malformed("no list of choices")
    for c in choices:
        if "message" in c:
            if not isinstance(c["message"], dict):
                raise Malformed("choice.message is not an object")
        elif not isinstance(c.get("text"), str):
            raise Malformed("a choice has neither message nor text")


def split_evenly(total: int, k: int) -> list[int]:
    base, rem = divmod(int(total or 0), k)
    return [base + (1 if j < rem else 0) for j in range(k)]


def finish_reason(reason: Any, cut: bool) -> str:
    if cut or reason in (None, "", "stop", "eos", "eos_token", "stop_sequence"):
        return "stop"
    return str(reason)  # "length" as is; rarer values ("content_filter", "tool_calls") are kept, not hidden


# cost(prompt_tokens, completion_tokens, the model the response names) -> USD or None (no price known)
CostOf = Callable[[int, int, "str | None"], "float | None"]


def completions_from_body(
    data: dict[str, Any], stop: list[str], latency: float, cost: CostOf | None = None
) -> list[Completion]:
    """Completions from a response body (checked by ``check_shape``). Usage totals are split evenly over the choices
    (the prompt is billed once per call), so summing the completions' tokens gives the call's; ``cost``, when given,
    prices each completion's share into ``extra["cost_usd"]``."""
    choices = sorted(data["choices"], key=lambda c: c.get("index") or 0)
    if not choices:
        return []
    usage = data.get("usage") or {}
    k = len(choices)
    ptoks = split_evenly(usage.get("prompt_tokens") or 0, k)
    ctoks = split_evenly(usage.get("completion_tokens") or 0, k)
    details = usage.get("completion_tokens_details") or {}
    out = []
    for j, ch in enumerate(choices):
        extra: dict[str, Any] = {}
        if "message" in ch:
            msg = ch["message"]
            text = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning")  # vLLM / DeepSeek style
            if reasoning:
                extra["reasoning"] = reasoning
        else:
            text = ch.get("text") or ""
        text, cut = truncate_at_stop(text, stop)
        if cost is not None:
            extra["cost_usd"] = cost(ptoks[j], ctoks[j], str(data["model"]) if data.get("model") else None)
        if details.get("reasoning_tokens"):
            extra["reasoning_tokens"] = split_evenly(details["reasoning_tokens"], k)[j]
        out.append(Completion(text, finish_reason(ch.get("finish_reason"), cut), ptoks[j], ctoks[j], latency, extra))
    return out


def error_message(body: Any) -> Any:
    """The message of an error body (``{"error": {"message": ...}}``, a bare ``{"message": ...}``, or text)."""
    msg = body.get("message") if isinstance(body, dict) else body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
    return msg


# -- the server's side: request bodies in, response bodies out -------------------------------------------------------
class BadRequest(ValueError):
    """A request the server refuses: ``status`` and the OpenAI-shaped ``body()`` naming ``param``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict[str, Any]:
        return error_body(str(self), "invalid_request_error", self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


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


def response_body(
    route: str,
    model: str,
    reqs: list[Request],
    comps: list[list[Completion]],
    scores: list[list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The answer to ``reqs`` at ``route``: one choice per completion, stop strings applied, usage summed. ``scores``
    (one dict per completion, from openai_logprobs.choice_scores) adds each choice's log-prob fields, and with echo
    its prompt text."""
    chat = route == ROUTES["chat"]
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for i, (req, cs) in enumerate(zip(reqs, comps)):
        prompt_tokens += max((c.prompt_tokens for c in cs), default=0)  # one prompt, billed once
        for j, c in enumerate(cs):
            completion_tokens += c.completion_tokens
            text, cut = truncate_at_stop(c.text, req.stop)  # for backends that ignore stop strings
            finish = "stop" if cut else c.finish_reason
            extra = dict(scores[i][j]) if scores is not None else {"logprobs": None}
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if c.extra.get("reasoning"):
                    message["reasoning_content"] = c.extra["reasoning"]
                choices.append({"index": len(choices), "message": message, "finish_reason": finish, **extra})
            else:
                text = extra.pop("echo_text", "") + text
                choices.append({"index": len(choices), "text": text, "finish_reason": finish, **extra})
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def model_body(model: str) -> dict[str, Any]:
    """``GET /v1/models/{model}``: the model object."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "cotbridge"}


def models_body(model: str) -> dict[str, Any]:
    """``GET /v1/models``: the one model served."""
    return {"object": "list", "data": [model_body(model)]}


def json_bytes(obj: Any) -> bytes:
    """``obj`` as JSON in UTF-8. A lone surrogate (it can only sit inside a JSON string) becomes its ``\\udXXX``
    escape, which is still valid JSON for the same string, where plain ``encode()`` would raise."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace")


def canonical_sha256(body: Any) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()
