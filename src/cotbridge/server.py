"""An OpenAI-compatible HTTP server over any Backend, for local teachers, tests and benchmarks.

Standard library only (``http.server``). Endpoints: ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /v1/models``, ``GET /health`` (the ``/v1`` prefix is optional).

Generation calls into the backend are serialised with a lock (a torch model is not thread-safe);
injected latency (``latency_ms``) is slept outside the lock, so concurrent clients overlap it.

Fault injection (``faults="rate=0.3,seed=0,kinds=429,500,hang,malformed,drop"``) makes a request,
before any generation, answer 429 with ``Retry-After``, 500, hang past the client's timeout and
then close, answer 200 with a malformed JSON body, or drop the connection without a response.

The request log (JSON lines) records what the server received: time, endpoint, sha256 of the
canonical body, the body, the status returned and the fault injected. Headers — and so the
``Authorization`` header — are never logged. A log that cannot be written (disk full, read-only,
folder removed) never stops the server answering: one warning, then it retries, counting the lines dropped.

Hostile or malformed bodies (too large, not JSON, nested too deeply, lone surrogates, wrong field types)
get a 4xx with an OpenAI-shaped error naming the field, and the server goes on serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import select
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cotbridge.backends.base import Completion, Request, truncate_at_stop
from cotbridge.errors import UserError

log = logging.getLogger(__name__)

FAULT_KINDS = ("429", "500", "hang", "malformed", "drop")
MAX_BODY_BYTES = 8 * 1024 * 1024  # default; a chat request is kilobytes, and each parsed body sits in memory
MAX_JSON_DEPTH = 64  # a chat body nests ~5 levels; deeper ones only exhaust the stack (json.loads recurses)
LOG_RETRY_S = 30.0  # a request log that failed is tried again after this long
MALFORMED_BODY = (
    b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "'
)


# -- fault injection -------------------------------------------------------------------------------
@dataclass
class FaultSpec:
    """What to inject: with probability ``rate``, one of ``kinds`` (chosen by a seeded RNG)."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: float = 1.0  # seconds, sent in the 429's Retry-After header
    hang_s: float = 5.0  # how long a "hang" holds the connection before closing it (beyond the client timeout)
    max: int | None = None  # at most this many faults in all (then every request succeeds)

    def __post_init__(self) -> None:
        self.kinds = tuple(str(k) for k in self.kinds)
        bad = [k for k in self.kinds if k not in FAULT_KINDS]
        if bad or not self.kinds:
            raise UserError(
                f"unknown fault kind(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                f"choose from {', '.join(FAULT_KINDS)}"
            )
        if not 0.0 <= self.rate <= 1.0:
            raise UserError(f"fault rate must be between 0 and 1, got {self.rate}")
        if self.retry_after < 0 or self.hang_s < 0 or (self.max is not None and self.max < 0):
            raise UserError("fault retry_after, hang_s and max must not be negative")


_FAULT_KEYS = {"rate": float, "seed": int, "kinds": str, "retry_after": float, "hang_s": float, "max": int}


def parse_faults(spec: str | None) -> FaultSpec | None:
    """Parse ``"rate=0.3,seed=0,kinds=429,500,hang,retry_after=0.2,hang_s=5,max=10"``.

    Items are comma-separated ``key=value``; the comma-separated values after ``kinds=`` (or
    values joined with ``|`` or ``+``) are the kinds. Unknown keys or kinds are a UserError.
    """
    if spec is None or not spec.strip():
        return None
    values: dict[str, Any] = {}
    kinds: list[str] = []
    last = None
    kinds_given = False
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if "=" not in item:
            if last != "kinds":
                raise UserError(f"fault spec {spec!r}: {item!r} is not key=value (keys: {', '.join(_FAULT_KEYS)})")
            kinds.append(item)
            continue
        key, _, value = (s.strip() for s in item.partition("="))
        if key not in _FAULT_KEYS:
            raise UserError(f"fault spec {spec!r}: unknown key {key!r} (keys: {', '.join(_FAULT_KEYS)})")
        last = key
        if key == "kinds":
            kinds_given = True
            kinds.extend(k for k in value.replace("|", "+").split("+") if k)
            continue
        try:
            values[key] = _FAULT_KEYS[key](value)
        except ValueError:
            raise UserError(
                f"fault spec {spec!r}: {key}={value!r} is not a valid {_FAULT_KEYS[key].__name__}"
            ) from None
    if kinds_given and not kinds:
        raise UserError(f"fault spec {spec!r}: kinds= names no kind")
    if kinds:
        values["kinds"] = tuple(kinds)
    return FaultSpec(**values)


class FaultInjector:
    def __init__(self, spec: FaultSpec):
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def draw(self) -> str | None:
        with self._lock:
            if self.spec.max is not None and sum(self.counts.values()) >= self.spec.max:
                return None
            if self._rng.random() >= self.spec.rate:
                return None
            kind = self._rng.choice(self.spec.kinds)
            self.counts[kind] += 1
            return kind


# -- request parsing ---------------------------------------------------------------------------------
class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


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


def _common(body: dict, default_max_tokens: int) -> dict[str, Any]:
    if _bool(body, "stream"):
        raise BadRequest("streaming is not supported by this server", "stream")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop must be a string or a list of strings", "stop")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _int(body, key, default_max_tokens, 1, 1_000_000)
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
    return Request(messages=messages, continue_final=continue_final, **_common(body, 128))


def completion_requests(body: dict) -> list[Request]:
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("prompt must be a string or a non-empty list of strings", "prompt")
    common = _common(body, 16)
    return [Request(prompt=p, **common) for p in prompts]


def canonical_sha256(body: Any) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(_utf8(text)).hexdigest()


def _utf8(json_text: str) -> bytes:
    """JSON text as UTF-8. A lone surrogate (it can only sit inside a JSON string) becomes its ``\\udXXX`` escape,
    which is still valid JSON for the same string, where plain ``encode()`` would raise."""
    return json_text.encode("utf-8", "backslashreplace")


# -- the server -----------------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 refuses connections when many clients connect at once
    app: OpenAICompatServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connections are reused
    disable_nagle_algorithm = True  # headers and body go out in separate writes; Nagle would add ~40 ms
    server_version = "cotbridge-serve"
    timeout = 120  # an idle keep-alive connection ends after this many seconds
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    # routing
    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def do_GET(self) -> None:  # noqa: N802
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _answer(self, handle: Callable[[], None]) -> None:
        """Run ``handle``; an error it did not foresee is a 500 to the client, not a dropped connection."""
        self._responded = False
        try:
            handle()
        except Exception as e:
            log.exception("%s %s failed", self.command, self.path)
            if self._responded:  # the response is partly out: the connection cannot carry another
                self.close_connection = True
            else:
                self._send_json(500, _error(f"internal server error: {type(e).__name__}", "server_error"))

    def _get(self) -> None:
        app = self.server.app
        route = self._route()
        if route == "/health":
            status, body = 200, {"status": "ok"}
        elif route == "/models":
            status, body = (
                200,
                {
                    "object": "list",
                    "data": [{"id": app.model_name, "object": "model", "created": 0, "owned_by": "cotbridge"}],
                },
            )
        else:
            status, body = 404, _error(f"no route GET {self.path}", "invalid_request_error")
        app.log_request_entry(self.path, None, status, None)
        self._send_json(status, body)

    def _post(self) -> None:
        app = self.server.app
        route = self._route()
        try:
            raw = self._read_body()
        except BadRequest as e:
            app.log_request_entry(self.path, None, e.status, None)
            self._send_json(e.status, _error(str(e), "invalid_request_error"))
            self._linger_close()
            return
        try:
            body = parse_body(raw) if raw else None
        except BadRequest as e:  # logged as text: re-encoding a body nested this deep could recurse as well
            app.log_request_entry(self.path, raw.decode("utf-8", "replace"), 400, None)
            self._send_json(400, _error(str(e), "invalid_request_error", e.param))
            return
        if route not in ("/chat/completions", "/completions"):
            app.log_request_entry(self.path, body, 404, None)
            self._send_json(404, _error(f"no route POST {self.path}", "invalid_request_error"))
            return
        if not isinstance(body, dict):
            app.log_request_entry(self.path, body, 400, None)
            self._send_json(400, _error("request body must be a JSON object", "invalid_request_error"))
            return
        asked = body.get("model")
        if asked is not None and not isinstance(asked, str):
            app.log_request_entry(self.path, body, 400, None)
            self._send_json(400, _error(f"model must be a string, got {asked!r}", "invalid_request_error", "model"))
            return
        if (
            asked is not None and asked != app.model_name and not app.any_model
        ):  # as the OpenAI API: an unknown model is a 404, not a stand-in
            app.log_request_entry(self.path, body, 404, None)
            self._send_json(
                404,
                _error(
                    f"The model {asked!r} does not exist: this server serves {app.model_name!r}",
                    "invalid_request_error",
                    "model",
                    "model_not_found",
                ),
            )
            return
        fault = app.injector.draw() if app.injector else None
        if fault is not None:
            self._inject(fault, body)
            return
        if app.latency_s > 0:
            time.sleep(app.latency_s)  # outside the generation lock: concurrent clients overlap it
        try:
            reqs = [chat_request(body)] if route == "/chat/completions" else completion_requests(body)
        except BadRequest as e:
            app.log_request_entry(self.path, body, 400, None)
            self._send_json(400, _error(str(e), "invalid_request_error", e.param))
            return
        try:
            comps = app.generate(reqs, client_gone=lambda: _peer_closed(self.connection))
        except Exception as e:  # a backend failure is the server's error, not the client's
            if type(e).__name__ == "GenerationInterrupted":
                log.info("%s: generation stopped, the client is gone or the server is stopping", self.path)
                app.log_request_entry(self.path, body, 499, None)
                self.close_connection = True
                return
            log.exception("generation failed")
            app.log_request_entry(self.path, body, 500, None)
            self._send_json(500, _error(f"generation failed: {type(e).__name__}: {e}", "server_error"))
            return
        resp = _response_body(route, asked if app.any_model and asked else app.model_name, reqs, comps)
        app.log_request_entry(self.path, body, 200, None)
        self._send_json(200, resp)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise BadRequest("chunked request bodies are not supported; send Content-Length", status=411)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if n < 0:
            raise BadRequest("bad Content-Length")
        limit = self.server.app.max_body_bytes
        if n > limit:  # refused before reading a byte of it
            raise BadRequest(f"request body of {n} bytes is larger than this server's limit of {limit}", status=413)
        return self.rfile.read(n)

    def _linger_close(self) -> None:
        """Close after an error sent before the body was read. Closing a socket with unread data makes the kernel
        send a reset, which can destroy the error response before the client reads it; so stop sending, then read
        and discard what the client still sends, for a second at most."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass
        except OSError:
            pass

    def _inject(self, fault: str, body: dict) -> None:
        app = self.server.app
        spec = app.injector.spec  # type: ignore[union-attr]
        status = {"429": 429, "500": 500, "malformed": 200}.get(fault)
        app.log_request_entry(self.path, body, status, fault)
        log.info("injecting fault %s on %s", fault, self.path)
        if fault == "429":
            ra = spec.retry_after
            self._send_json(
                429,
                _error("Rate limit reached (injected fault)", "rate_limit_error", code="rate_limit_exceeded"),
                {"Retry-After": str(int(ra)) if float(ra).is_integer() else f"{ra:g}"},
            )
        elif fault == "500":
            self._send_json(500, _error("The server had an error (injected fault)", "server_error"))
        elif fault == "malformed":
            self._send_raw(200, MALFORMED_BODY, "application/json")
        elif fault == "hang":
            app.stopping.wait(spec.hang_s)  # longer than the client's timeout; ends early when the server stops
            self._drop()
        elif fault == "drop":
            self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, _utf8(json.dumps(obj, ensure_ascii=False)), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._responded = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) — nothing to tell it
            self.close_connection = True


def _error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _response_body(route: str, model: str, reqs: list[Request], comps: list[list[Completion]]) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for req, cs in zip(reqs, comps):
        prompt_tokens += max((c.prompt_tokens for c in cs), default=0)  # one prompt, billed once
        for c in cs:
            completion_tokens += c.completion_tokens
            text, cut = truncate_at_stop(c.text, req.stop)  # for backends that ignore stop strings
            finish = "stop" if cut else c.finish_reason
            if route == "/chat/completions":
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if c.extra.get("reasoning"):
                    message["reasoning_content"] = c.extra["reasoning"]
                choices.append({"index": len(choices), "message": message, "finish_reason": finish, "logprobs": None})
            else:
                choices.append({"index": len(choices), "text": text, "finish_reason": finish, "logprobs": None})
    chat = route == "/chat/completions"
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


class RequestLog:
    """The request log: appends one JSON line per request, and never lets a failed write fail the request.

    When a write fails (disk full, read-only file system, folder removed) the line is dropped, one warning names the
    file, the error and the fix, and writing is tried again every ``retry_s`` seconds, since the usual causes (a full
    disk, a remount) pass while the server keeps running; lines that arrive in between are dropped and counted. The
    count is reported when writing works again and at close.
    """

    def __init__(self, path: str | Path, retry_s: float = LOG_RETRY_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_s = retry_s
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        self._failing = False
        self._failed_at = 0.0
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # as open(): umask applies

    def write(self, line: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._failing and time.monotonic() - self._failed_at < self.retry_s:
                self.dropped += 1
                return
            try:
                self._append(line)
            except OSError as e:
                self.dropped += 1
                self._failed_at = time.monotonic()
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "request log %s cannot be written (%s): requests are still answered but not logged; "
                        "free disk space or make the file writable (retrying every %g s, dropped lines are counted)",
                        self.path,
                        e,
                        self.retry_s,
                    )
                return
            if self._failing:
                self._failing = False
                log.warning("request log %s is written again; %d line(s) were dropped so far", self.path, self.dropped)

    def _append(self, line: bytes) -> None:
        if self._fd is None or os.fstat(self._fd).st_nlink == 0:  # removed: writes would vanish into the unlinked file
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._fd = self._open()  # raises while the folder is gone
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(line)
            while view:  # a nearly full disk takes part of the line, then raises ENOSPC on the rest
                view = view[os.write(self._fd, view) :]
        except OSError:
            try:  # no torn line: readers of the log see whole entries only
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.dropped:
                log.warning("request log %s: %d line(s) could not be written, dropped", self.path, self.dropped)


class OpenAICompatServer:
    """An OpenAI-compatible server over ``backend`` (anything with ``generate(requests)``).

    ``port=0`` picks a free port; ``url`` is the base URL for clients (``http://host:port/v1``).
    Use ``serve_forever()`` in the foreground, or ``start()``/``stop()`` (or ``with``) for a thread.
    """

    def __init__(
        self,
        backend: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        model_name: str | None = None,
        faults: str | FaultSpec | None = None,
        latency_ms: float = 0.0,
        request_log: str | Path | None = None,
        any_model: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
    ):
        """``any_model``: answer requests for any model name (an in-process stand-in for an API in tests);
        otherwise a request for another model than ``model_name`` is a 404 ``model_not_found``, as OpenAI's.
        ``max_body_bytes``: a larger request body is refused with a 413 from its Content-Length, unread."""
        self.backend = backend
        self.model_name = model_name or getattr(backend, "model_id", None) or "cotbridge"
        self.any_model = any_model
        spec = parse_faults(faults) if isinstance(faults, str) else faults
        self.injector = FaultInjector(spec) if spec is not None and spec.rate > 0 else None
        if latency_ms < 0:
            raise UserError(f"latency_ms must not be negative, got {latency_ms}")
        self.latency_s = latency_ms / 1000
        if max_body_bytes < 1:
            raise UserError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.max_body_bytes = max_body_bytes
        self.stopping = threading.Event()
        self._gen_lock = threading.Lock()
        try:  # at start a log that cannot be opened is the user's to fix, before anything is served unlogged
            self.request_log = RequestLog(request_log) if request_log is not None else None
        except OSError as e:
            raise UserError(f"cannot open the request log {request_log}: {e.strerror or e}") from None
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except OSError as e:
            self.close_log()
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        self.httpd.app = self
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/v1"

    def generate(self, reqs: list[Request], client_gone: Callable[[], bool] | None = None) -> list[list[Completion]]:
        """One generation at a time (torch models are not thread-safe). A backend that can be interrupted (hf) stops
        early when the server is shutting down or the client has hung up, so no work is done for nobody."""
        with self._gen_lock:
            if hasattr(self.backend, "interrupt"):
                self.backend.interrupt = lambda: self.stopping.is_set() or bool(client_gone and client_gone())
            try:
                return self.backend.generate(reqs, progress=False)
            finally:
                if hasattr(self.backend, "interrupt"):
                    self.backend.interrupt = None

    def log_request_entry(self, endpoint: str, body: Any, status: int | None, fault: str | None) -> None:
        if self.request_log is None:
            return
        entry = {
            "time": round(time.time(), 6),
            "endpoint": endpoint,
            "body_sha256": canonical_sha256(body) if body is not None else None,
            "body": body,
            "status": status,
            "fault": fault,
        }
        self.request_log.write(_utf8(json.dumps(entry, ensure_ascii=False) + "\n"))

    def close_log(self) -> None:
        if self.request_log is not None:
            self.request_log.close()

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.05)
        finally:
            self.stopping.set()

    def start(self) -> OpenAICompatServer:
        self._thread = threading.Thread(target=self.serve_forever, name="cotbridge-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        # Let a generation in progress notice `stopping` and end, so no thread is inside torch at exit
        # (that ended Ctrl-C with "terminate called without an active exception").
        if self._gen_lock.acquire(timeout=60):
            self._gen_lock.release()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        self.close_log()

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_server(backend: Any, **opts: Any) -> Iterator[str]:
    """Serve ``backend`` on 127.0.0.1 and an ephemeral port in a thread; yield the base URL (``.../v1``).

    ``opts`` are OpenAICompatServer's (faults, latency_ms, request_log, model_name, any_model, host, port). Without a
    ``model_name`` it stands in for any API model (``any_model``); ``cotbridge serve`` answers only its own.
    """
    opts.setdefault("port", 0)
    opts.setdefault("any_model", "model_name" not in opts)
    with OpenAICompatServer(backend, **opts) as server:
        yield server.url


def _peer_closed(sock: Any) -> bool:
    """True when the client has closed its end (readable with nothing to read); a pipelined request is not a close."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
