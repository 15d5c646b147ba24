"""Each HTTP attempt of an OpenAI API call, the SDK's own retries included, seen in one place: the SDK's async HTTP
client with ``send`` reporting every attempt to the current call (``Call``), which applies the rate limits, counts
the retry and logs it. Kept apart from openai_api.py's backend, which only opens a call and reads its outcome."""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import time
from typing import Any

from cotbridge.backends.http_pacing import parse_retry_after

log = logging.getLogger("cotbridge.backends.openai_api")  # the retry warnings keep the backend's logger name


class Call:
    """One logical API call. Each HTTP attempt for it — the first, the SDK's retries, and ours after a
    malformed body — passes through ``counting_client_class()``'s ``send``, which calls ``begin`` and
    ``failed``: so rate limits apply to every attempt, and each retry is counted and logged once."""

    def __init__(self, backend: Any, label: str, estimate: int, budget: int):
        """``backend``: the OpenAIBackend making the call (its usage counters and rate limits)."""
        self.backend, self.label, self.estimate, self.budget = backend, label, estimate, budget
        self.attempts = 0
        self.what: str | None = None  # how the last attempt failed, None while it has not
        self.retry_after: float | None = None
        self.started = self.ended = time.perf_counter()

    async def begin(self) -> None:
        be = self.backend
        if self.attempts:
            be.usage.retries += 1
            log.warning(
                "%s: %s; retry %d/%d after %.2f s%s",
                self.label,
                self.what or "failed",
                self.attempts,
                self.budget,
                time.perf_counter() - self.ended,
                f" (Retry-After {self.retry_after:g} s)" if self.retry_after is not None else "",
            )
        self.attempts += 1
        self.what = self.retry_after = None
        if be._rpm is not None:
            await be._rpm.acquire(1)
        if be._tpm is not None:
            await be._tpm.acquire(self.estimate)
        self.started = time.perf_counter()

    def failed(self, what: str, retry_after: float | None = None) -> None:
        self.what, self.retry_after, self.ended = what, retry_after, time.perf_counter()


CURRENT_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("cotbridge_openai_call")  # per asyncio task


@functools.cache
def http_module() -> Any:
    """The HTTP library under the SDK: httpx (openai 1.x) or httpx2 (later), whose AsyncClient it subclasses."""
    import openai

    base = openai.DefaultAsyncHttpxClient
    return sys.modules[next(c for c in base.__mro__ if c.__name__ == "AsyncClient").__module__.partition(".")[0]]


@functools.cache
def ssl_context(trust_env: bool) -> Any:
    """One TLS context for every client of this process: building one (reading the CA bundle) takes ~20 ms, and a
    client is made for each endpoint at each generate() call (a teach run makes one call a chunk). ``trust_env``:
    SSL_CERT_FILE / SSL_CERT_DIR are honoured, as the HTTP library's own default would."""
    return http_module().create_ssl_context(trust_env=trust_env)


@functools.cache
def counting_client_class() -> type:
    """The SDK's own async HTTP client class (its pool limits and defaults) with ``send`` reporting each
    attempt to the current ``Call``. ``send`` is public httpx API and sees every attempt, whichever
    transport (proxy mounts included) carries it; the SDK calls it once per attempt, in the caller's task."""
    import openai

    base = openai.DefaultAsyncHttpxClient
    http = http_module()

    class CountingAsyncClient(base):  # type: ignore[misc, valid-type]
        async def send(self, request: Any, **kwargs: Any) -> Any:
            call = CURRENT_CALL.get(None)
            if call is None:
                return await super().send(request, **kwargs)
            await call.begin()
            try:
                response = await super().send(request, **kwargs)
            except http.TimeoutException:
                call.failed("timeout")
                raise
            except Exception:  # refused, reset or dropped connections, a body cut off
                call.failed("connection error")
                raise
            if response.status_code >= 400:
                call.failed(f"HTTP {response.status_code}", parse_retry_after(response.headers))
            return response

    return CountingAsyncClient
