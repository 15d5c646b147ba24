"""The OpenAI chat/completions wire format, written once: what ``cotbridge serve`` (server.py), the client
(openai_api.py) and the Batch API files (batch_api.py) send and read.

Client side: ``request_body`` (a Request → the JSON body sent, and written to Batch API input), ``check_shape`` and
``completions_from_body`` (a response body → Completions; ``Malformed`` when it is not a usable completion),
``error_message`` (the message of an error body). Server side: ``response_body`` / ``models_body`` (Completions →
the JSON answered), ``error_body`` / ``BadRequest`` (OpenAI-shaped errors naming the field). The server reads request
bodies with openai_requests.py; log-probs and streamed answers are shaped by openai_logprobs.py and
openai_stream.py. The client never streams.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from cotbridge.backends.base import Completion, Request, truncate_at_stop
from cotbridge.errors import UserError

ROUTES = {"chat": "/chat/completions", "completions": "/completions"}  # below the /v1 prefix
OPENAI_MAX_STOP = 4  # the API takes at most 4 stop strings; the rest are applied locally


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


# -- the server's side: errors and response bodies out (request bodies in: openai_requests.py) ----------------------
class BadRequest(ValueError):
    """A request the server refuses: ``status`` and the OpenAI-shaped ``body()`` naming ``param``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict[str, Any]:
        return error_body(str(self), "invalid_request_error", self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


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
