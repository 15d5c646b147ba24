"""An OpenAI-compatible HTTP server over any Backend, for local teachers, tests and benchmarks.

Standard library only (``http.server``). Endpoints: ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health`` (the ``/v1`` prefix is
optional). Over a local model (hf) it also answers log-probs (``logprobs``, ``top_logprobs``, ``echo``, vLLM's
``prompt_logprobs``; backends/openai_logprobs.py) and token-id prompts; ``stream: true`` gets server-sent events
(backends/openai_stream.py). A parameter it does not act on gets a 400 naming it; so does a prompt (or an explicit
``max_tokens``) that does not fit the served model's context window, before any generation
(backends/context_window.py).

Generation calls into the backend are serialised with a lock (a torch model is not thread-safe);
injected latency (``latency_ms``) is slept outside the lock, so concurrent clients overlap it.

The wire format (request parsing, response and error bodies) is backends/openai_wire.py, shared with the client;
fault injection (``faults="rate=0.3,seed=0,kinds=429,500,hang,malformed,drop"``: 429, 500, a hang, a malformed
body or a dropped connection, before any generation) is backends/fault_injection.py.

The request log (JSON lines) records what the server received: time, endpoint, sha256 of the
canonical body, the body, the status returned and the fault injected. Headers — and so the
``Authorization`` header — are never logged. A log that cannot be written (disk full, read-only,
folder removed) never stops the server answering: one warning, then it retries, counting the lines dropped.

Hostile or malformed bodies (too large, not JSON, nested too deeply, lone surrogates, wrong field types)
get a 4xx with an OpenAI-shaped error naming the field, and the server goes on serving.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pydantic import ConfigDict, Field

from cotbridge.backends import openai_logprobs
from cotbridge.backends.base import Completion, GenerationInterrupted, Request
from cotbridge.backends.context_window import check_served
from cotbridge.backends.fault_injection import FaultInjector, FaultSpec, parse_faults
from cotbridge.backends.openai_requests import (
    Extras,
    check_model,
    check_model_error,
    check_parameters,
    parse_body,
    parse_extras,
    parse_requests,
)
from cotbridge.backends.openai_stream import stream_events
from cotbridge.backends.openai_wire import (
    ROUTES,
    BadRequest,
    canonical_sha256,
    error_body,
    json_bytes,
    model_body,
    models_body,
    response_body,
)
from cotbridge.config import StrictModel
from cotbridge.errors import UserError
from cotbridge.request_log import RequestLog

__all__ = [
    "FaultSpec",
    "OpenAICompatServer",
    "RequestLog",
    "ServeConfig",
    "canonical_sha256",
    "parse_faults",
    "running_server",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024  # default; a chat request is kilobytes, and each parsed body sits in memory
MAX_BODY_MB = 1024 * 1024  # 1 TiB: a larger limit is a typo


class ServeConfig(StrictModel):
    """``cotbridge serve``'s settings (its options, a --config YAML and --set all land here)."""

    model_config = ConfigDict(protected_namespaces=())  # model_name is ours (older pydantic warns on model_*)

    model: str | None = None  # hub id, local folder, .gguf file or embedded name
    host: str = "127.0.0.1"  # address to listen on (the server has no authentication: keep it local)
    port: int = Field(default=8000, ge=0, le=65535)  # port (0 picks a free one)
    batch_size: int = Field(default=16, ge=1)  # sequences per generation batch
    gguf_file: str | None = None  # GGUF file inside a model folder holding several
    # inject faults, e.g. rate=0.3,kinds=429,hang,retry_after=1 (kinds: 429, 500, hang, malformed, drop; other keys:
    # seed, hang_s, max)
    faults: str | None = None
    latency_ms: float = Field(default=0.0, ge=0)  # extra latency per request, slept outside the generation lock
    # append every received request to this JSONL file (if it cannot be written, requests are still answered: one
    # warning, retried every 30 s, dropped lines counted)
    request_log: str | None = None
    max_body_mb: float = Field(default=8.0, gt=0, lt=MAX_BODY_MB)  # refuse larger request bodies with a 413, unread
    model_name: str | None = None  # the model name clients ask for (default MODEL); requests for another get a 404


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
        if self.server.app.stopping.is_set():  # a kept-alive connection outlives the listener: end it too
            self.close_connection = True
            self._send_json(503, error_body("the server is shutting down", "server_error"))
            return
        try:
            handle()
        except Exception as e:
            log.exception("%s %s failed", self.command, self.path)
            if self._responded:  # the response is partly out: the connection cannot carry another
                self.close_connection = True
            else:
                self._send_json(500, error_body(f"internal server error: {type(e).__name__}", "server_error"))

    def _get(self) -> None:
        app = self.server.app
        route = self._route()
        if route == "/health":
            status, body = 200, {"status": "ok"}
        elif route == "/models":
            status, body = 200, models_body(app.model_name)
        elif route.startswith("/models/"):
            asked = unquote(route[len("/models/") :])
            if asked == app.model_name or app.any_model:
                status, body = 200, model_body(asked)
            else:
                status, body = 404, check_model_error(asked, app.model_name)
        else:
            status, body = 404, error_body(f"no route GET {self.path}", "invalid_request_error")
        app.log_request_entry(self.path, None, status, None)
        self._send_json(status, body)

    def _refuse(self, e: BadRequest, logged: Any) -> None:
        self.server.app.log_request_entry(self.path, logged, e.status, None)
        self._send_json(e.status, e.body())

    def _post(self) -> None:
        app = self.server.app
        route = self._route()
        try:
            raw = self._read_body()
        except BadRequest as e:
            self._refuse(e, None)
            self._linger_close()
            return
        try:
            body = parse_body(raw) if raw else None
        except BadRequest as e:  # logged as text: re-encoding a body nested this deep could recurse as well
            self._refuse(e, raw.decode("utf-8", "replace"))
            return
        try:
            if route not in ROUTES.values():
                raise BadRequest(f"no route POST {self.path}", status=404)
            asked = check_model(body, app.model_name, app.any_model)
        except BadRequest as e:
            self._refuse(e, body)
            return
        fault = app.injector.draw() if app.injector else None
        if fault is not None:
            self._inject(fault, body)
            return
        if app.latency_s > 0:
            time.sleep(app.latency_s)  # outside the generation lock: concurrent clients overlap it
        try:
            check_parameters(route, body)
            reqs, extras = parse_requests(route, body), parse_extras(route, body)
            openai_logprobs.prepare(app.backend, reqs, extras)
            check_served(app.backend, route, body, reqs)  # a prompt longer than the model's window: a 400, as vLLM
        except BadRequest as e:
            self._refuse(e, body)
            return
        try:
            comps, scores = app.answer(route, reqs, extras, client_gone=lambda: _peer_closed(self.connection))
        except GenerationInterrupted:
            log.info("%s: generation stopped, the client is gone or the server is stopping", self.path)
            app.log_request_entry(self.path, body, 499, None)
            self.close_connection = True
            return
        except Exception as e:  # a backend failure is the server's error, not the client's
            log.exception("generation failed")
            app.log_request_entry(self.path, body, 500, None)
            self._send_json(500, error_body(f"generation failed: {type(e).__name__}: {e}", "server_error"))
            return
        resp = response_body(route, asked if app.any_model and asked else app.model_name, reqs, comps, scores)
        app.log_request_entry(self.path, body, 200, None)
        if extras.stream:
            self._send_raw(200, stream_events(resp, extras.include_usage), "text/event-stream")
        else:
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
        reply = app.injector.reply(fault)  # type: ignore[union-attr]
        app.log_request_entry(self.path, body, reply.status, fault)
        log.info("injecting fault %s on %s", fault, self.path)
        if reply.body is not None:
            self._send_raw(reply.status or 200, reply.body, "application/json", reply.headers)
            return
        if reply.hang_s:  # longer than the client's timeout; ends early when the server stops
            app.stopping.wait(reply.hang_s)
        self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json_bytes(obj), "application/json", headers)

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

    def answer(
        self, route: str, reqs: list[Request], extras: Extras, client_gone: Callable[[], bool] | None = None
    ) -> tuple[list[list[Completion]], list[list[dict[str, Any]]] | None]:
        """The completions of ``reqs`` (none generated for a request of 0 new tokens), and each choice's log-prob
        fields when ``extras`` asks for them or for echo (scored under the generation lock: the same model)."""
        comps = openai_logprobs.generate(self.backend, reqs, lambda rs: self.generate(rs, client_gone), extras)
        if not (extras.scored or extras.echo):
            return comps, None
        with self._gen_lock:
            return comps, openai_logprobs.choice_scores(route, self.backend, reqs, comps, extras)

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
        self.request_log.write(json_bytes(entry) + b"\n")

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


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` and let it go, so that a port in use or a bad host is said before a model loads (the
    server binds again once the model is in memory; port 0 always passes)."""
    try:
        _HTTPServer((host, port), _Handler).server_close()
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


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
