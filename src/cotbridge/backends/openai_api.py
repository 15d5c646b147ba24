"""OpenAI (and OpenAI-compatible: vLLM, llama.cpp, ``cotbridge serve``) chat/completions backend.

Requests run concurrently (``concurrency``) on the official ``openai`` package's ``AsyncOpenAI``,
and the SDK does the retrying (``max_retries``): 408, 409, 429, 5xx, timeouts and dropped
connections, with its own exponential backoff (0.5 s doubling to 8 s, jittered) or the server's
``Retry-After`` / ``retry-after-ms``. Other 4xx fail at once. The one failure the SDK cannot see —
a 200 whose body is not a usable completion (bad JSON, no choices) — is retried here, paced by
``backoff_base_s`` / ``backoff_max_s`` (full jitter), within the same ``max_retries`` budget per
call. Every attempt, the SDK's retries included, goes through this module's HTTP client, which
applies the optional requests- and tokens-per-minute limits (token buckets), counts retries
(``usage.retries``) and logs each one as a warning. ``on_result`` fires as each request
finishes, so callers can persist paid results before the batch ends. The bodies sent and read are
backends/openai_wire.py's, the one wire format (``cotbridge serve`` reads and answers the same).

The API key comes only from the environment variable named by ``api_key_env``; it is never
logged or put into an exception message. A local server (loopback / private address) needs none.

Max tokens: compatible servers (vLLM, llama.cpp, TGI, ``cotbridge serve``) all accept
``max_tokens``; OpenAI's own chat API wants ``max_completion_tokens`` (its reasoning models reject
``max_tokens``). ``max_tokens_param="auto"`` therefore sends ``max_completion_tokens`` to
api.openai.com chat and ``max_tokens`` everywhere else; pass the name to force one.

Several servers (vLLM data-parallel replicas, several ``cotbridge serve``): ``base_url`` as a list, or ``endpoints``
(URLs or ``{url, concurrency}``). ``concurrency`` is then each endpoint's; requests are spread by free room, an
endpoint failing ``endpoint_fail_after`` times in a row is taken out for ``endpoint_pause_s``, and a request that
failed on one goes to another (backends/endpoint_pool.py). The SDK retries ``endpoint_retries`` times within one
endpoint before that; ``max_retries`` bounds the moves between endpoints.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tqdm.auto import tqdm

from cotbridge.backends import openai_wire as wire
from cotbridge.backends import pricing
from cotbridge.backends.base import BACKENDS, Completion, Request, ResultCallback
from cotbridge.backends.batch_api import BatchAPIMixin
from cotbridge.backends.endpoint_pool import Endpoint, EndpointPool, parse_endpoints
from cotbridge.backends.http_pacing import AsyncTokenBucket, is_local_url
from cotbridge.backends.openai_attempts import CURRENT_CALL, Call, counting_client_class, http_module, ssl_context
from cotbridge.backends.secrets import credentials_in_url, url_credentials
from cotbridge.errors import UserError

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A generation call failed for good (not retryable, or retries exhausted). Never holds the API key."""

    def __init__(self, message: str, *, status: int | str | None = None, attempts: int = 0):
        super().__init__(message)
        self.status, self.attempts = status, attempts


@dataclass
class Usage:
    """Running totals: ``requests`` are successful API calls, ``retries`` retried attempts,
    ``failed`` requests that raised; ``cost_usd`` is None for a model without a price."""

    requests: int = 0
    retries: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OpenAIBackend(BatchAPIMixin):
    """Chat or completions calls to an OpenAI-compatible API; see the module docstring."""

    kind = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | list[str] | None = None,
        endpoints: list[str | dict[str, Any]] | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        api: str = "chat",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout_s: float = 60,
        rpm: float | None = None,
        tpm: float | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        prices: str | Path | Mapping[str, Mapping[str, float]] | None = None,
        max_tokens_param: str = "auto",
        endpoint_retries: int = 1,
        endpoint_fail_after: int = 3,
        endpoint_pause_s: float = 30,
    ):
        if api not in ("chat", "completions"):
            raise UserError(f"api must be 'chat' or 'completions', got {api!r}")
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_base_s < 0 or backoff_max_s < 0:
            raise UserError("concurrency must be ≥ 1, max_retries ≥ 0, timeout_s > 0 and backoff times ≥ 0")
        if endpoint_retries < 0 or endpoint_fail_after < 1 or endpoint_pause_s < 0:
            raise UserError("endpoint_retries must be ≥ 0, endpoint_fail_after ≥ 1 and endpoint_pause_s ≥ 0")
        if max_tokens_param not in ("auto", "max_tokens", "max_completion_tokens"):
            raise UserError(
                f"max_tokens_param must be auto, max_tokens or max_completion_tokens, got {max_tokens_param!r}"
            )
        try:
            import openai  # noqa: F401
        except ImportError:
            raise UserError("the openai backend needs the openai package: pip install 'cotbridge[api]'") from None
        self.model_id = model
        from_env = base_url is None and endpoints is None
        if from_env:
            base_url = os.environ.get("OPENAI_BASE_URL") or None
        self.endpoints = parse_endpoints(base_url, endpoints, concurrency)
        for e in self.endpoints:  # URLs are logged and named in errors: a key in one would leak (secrets.py)
            if e.url and url_credentials(e.url):
                raise UserError(credentials_in_url("OPENAI_BASE_URL" if from_env else "base_url", e.url))
        self.base_url = self.endpoints[0].url or None  # the first (or only) server; None: api.openai.com
        hosts = [urlparse(e.url).hostname if e.url else "api.openai.com" for e in self.endpoints]
        host = next((h for e, h in zip(self.endpoints, hosts) if not is_local_url(e.url or None)), hosts[0])
        self.official = all(h == "api.openai.com" for h in hosts)
        self.local = all(is_local_url(e.url or None) for e in self.endpoints)
        self.endpoint_retries, self.endpoint_fail_after, self.endpoint_pause_s = (
            endpoint_retries,
            endpoint_fail_after,
            endpoint_pause_s,
        )
        self.api = api
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env) if api_key_env else None
        if not key:
            if not self.local:
                raise UserError(
                    f"no API key: set the environment variable {api_key_env} (needed for {host}; "
                    f"only local servers run without one)"
                )
            key = "EMPTY"
        self._api_key = key  # private: never logged, never in messages
        self.concurrency, self.max_retries, self.timeout_s = concurrency, max_retries, timeout_s
        self.backoff_base_s, self.backoff_max_s = (
            backoff_base_s,
            backoff_max_s,
        )  # malformed bodies; the SDK paces the rest
        self.token_param = (
            ("max_completion_tokens" if self.official and api == "chat" else "max_tokens")
            if max_tokens_param == "auto"
            else max_tokens_param
        )
        if api == "completions":
            self.token_param = "max_tokens"
        if prices is None:
            self.prices: Mapping[str, Mapping[str, float]] = pricing.DEFAULT_PRICES
        elif isinstance(prices, (str, Path)):
            self.prices = pricing.load_price_table(prices)
        else:
            self.prices = {**pricing.DEFAULT_PRICES, **pricing.validate_price_table(dict(prices), "prices")}
        self.priced = pricing.price_for(model, self.prices) is not None
        self._rpm = AsyncTokenBucket(rpm) if rpm else None
        self._tpm = AsyncTokenBucket(tpm) if tpm else None
        self._rng = random.Random()
        self.usage = Usage(cost_usd=0.0 if self.priced else None)

    def __repr__(self) -> str:
        where = [e.url for e in self.endpoints] if len(self.endpoints) > 1 else self.base_url
        return f"OpenAIBackend(model={self.model_id!r}, base_url={where!r}, api={self.api!r})"

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: its URL, concurrency, and the requests it answered and failed so far."""
        return [e.stats() for e in self.endpoints]

    # -- request bodies ------------------------------------------------------------------------------
    def request_body(self, req: Request, n: int | None = None, sample_offset: int = 0) -> dict[str, Any]:
        """The JSON body sent for ``req`` (``n`` samples starting at sample ``first_sample + sample_offset``)."""
        return wire.request_body(
            req,
            model=self.model_id,
            api=self.api,
            token_param=self.token_param,
            official=self.official,
            n=n,
            sample_offset=sample_offset,
        )

    def _estimate_tokens(self, req: Request, n: int) -> int:
        return pricing.estimate_prompt_tokens(req.prompt, req.messages) + n * req.max_tokens

    # -- generation -----------------------------------------------------------------------------------
    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        if not requests:
            return []
        for r in requests:  # fail on bad input before any paid call
            self.request_body(r)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._agenerate(requests, progress, on_result))
        with ThreadPoolExecutor(1, thread_name_prefix="cotbridge-openai") as pool:  # called from inside a loop
            return pool.submit(asyncio.run, self._agenerate(requests, progress, on_result)).result()

    def _client(self, endpoint: Endpoint | None = None) -> Any:
        import openai

        url = (endpoint or self.endpoints[0]).url or None
        # The SDK retries 408/409/429/5xx, timeouts and dropped connections (Retry-After honoured); with several
        # endpoints only endpoint_retries times, since another endpoint may answer at once.
        retries = self.max_retries if len(self.endpoints) == 1 else min(self.max_retries, self.endpoint_retries)
        # A server on this machine is reached directly: an HTTP(S)_PROXY in the environment (common on clusters)
        # would otherwise route 127.0.0.1 through the proxy, which cannot reach it.
        trust_env = not is_local_url(url, loopback_only=True)
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=url,
            timeout=self.timeout_s,
            max_retries=retries,
            http_client=counting_client_class()(
                timeout=self.timeout_s, trust_env=trust_env, verify=ssl_context(trust_env)
            ),
        )

    async def _agenerate(
        self, requests: list[Request], progress: bool, on_result: ResultCallback | None
    ) -> list[list[Completion]]:
        for bucket in (self._rpm, self._tpm):
            if bucket is not None:
                bucket.bind()
        pool = EndpointPool(self.endpoints, fail_after=self.endpoint_fail_after, pause_s=self.endpoint_pause_s)
        room = asyncio.Semaphore(sum(e.concurrency for e in self.endpoints))  # the pool's waiters stay few
        out: list[list[Completion] | None] = [None] * len(requests)
        failed: list[BaseException] = []
        unanswered: list[int] = []  # requests that raised (callbacks that raised are answered ones)
        bar = tqdm(
            total=len(requests), desc=f"openai ({self.model_id})", unit="req", disable=not progress, leave=False
        )
        clients = {id(e): self._client(e) for e in self.endpoints}

        async def one(i: int, req: Request) -> None:
            async with room:
                if failed:  # after a failure, send nothing new; requests in flight still finish and are kept
                    return
                try:
                    comps = await self._run_spread(pool, clients, req, f"request {i}")
                except BaseException as e:
                    failed.append(e)
                    unanswered.append(i)
                    self.usage.failed += 1
                    raise
            out[i] = comps
            bar.update(1)
            post = {"retries": self.usage.retries, "tokens": self.usage.completion_tokens}
            if self.usage.cost_usd is not None:
                post["cost"] = f"{self.usage.cost_usd:.4f}"
            if pool.several:
                post["out"] = f"{len(pool.out())}/{len(pool.endpoints)}"
            bar.set_postfix(post, refresh=False)
            if on_result is not None:
                try:
                    on_result(i, comps)
                except BaseException as e:  # the caller cannot keep results (e.g. its cache is full): stop sending
                    failed.append(e)
                    raise

        try:
            results = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)), return_exceptions=True)
        finally:
            bar.close()
            for client in clients.values():
                await client.close()
            if pool.several:
                log.info(
                    "endpoints: %s",
                    "; ".join(f"{e.url} answered {e.answered}, failed {e.failed}" for e in pool.endpoints),
                )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            done = sum(o is not None for o in out)  # answered, whether or not the caller could keep them
            log.error(
                "%d of %d requests failed; %d answered (delivered through on_result), %d not sent",
                len(unanswered),
                len(requests),
                done,
                len(requests) - done - len(unanswered),
            )
            raise failed[0] if failed else errors[0]
        return out  # type: ignore[return-value]

    async def _run_spread(
        self, pool: EndpointPool, clients: dict[int, Any], req: Request, label: str
    ) -> list[Completion]:
        """``req`` on the pool's endpoints: one that fails it (its fault, not the request's) hands it to another,
        at most ``max_retries`` times. With one endpoint, the SDK's retries are all."""
        moves, last = 0, None
        while True:
            ep = await pool.acquire(avoid=last)
            try:
                comps = await self._run_request(clients[id(ep)], req, label, ep.url)
            except BackendError as e:
                fault = endpoint_fault(e.status)
                await pool.release(ep, True if fault else None)
                if not (fault and pool.several):
                    raise
                if moves >= self.max_retries:
                    raise BackendError(
                        f"{label}: no endpoint answered in {moves + 1} tries across {len(pool.endpoints)} endpoints "
                        f"(max_retries={self.max_retries}); the last: {e}",
                        status=e.status,
                        attempts=e.attempts,
                    ) from None
                moves += 1
                self.usage.retries += 1
                log.warning("%s; moving it to another endpoint (%d/%d)", e, moves, self.max_retries)
                last = ep
                continue
            except BaseException:
                await pool.release(ep, None)
                raise
            await pool.release(ep, False)
            return comps

    async def _run_request(self, client: Any, req: Request, label: str, where: str | None = None) -> list[Completion]:
        comps: list[Completion] = []
        while len(comps) < req.n:  # a server that returns fewer choices than n (llama.cpp) is asked again
            want = req.n - len(comps)
            body = self.request_body(req, want, len(comps))
            data, latency = await self._call(client, body, self._estimate_tokens(req, want), label, where)
            got = self._completions(data, req.stop, latency)[:want]
            if not got:
                raise BackendError(f"{label}: the server returned no choices", status=200)
            self._account(got)
            comps.extend(got)
        return comps

    def _account(self, comps: list[Completion]) -> None:
        self.usage.requests += 1
        for c in comps:
            self.usage.prompt_tokens += c.prompt_tokens
            self.usage.completion_tokens += c.completion_tokens
            if self.usage.cost_usd is not None and c.extra.get("cost_usd") is not None:
                self.usage.cost_usd += c.extra["cost_usd"]

    async def _post(self, client: Any, body: dict[str, Any]) -> bytes:
        # The SDK's generic post (its retries, auth and errors) with the body as wire.py built it: the typed
        # create() would walk the body through its TypedDict transform, ~1 ms of CPU a request (a fifth of the
        # client's time at concurrency 32), to send the same JSON.
        response = await client.post(wire.ROUTES[self.api], cast_to=http_module().Response, body=body)
        return response.content

    async def _call(
        self, client: Any, body: dict[str, Any], estimate: int, label: str, where: str | None = None
    ) -> tuple[dict[str, Any], float]:
        import openai

        call = Call(self, label, estimate, budget=client.max_retries)
        fail = functools.partial(self._failure, call, where=where)
        token = CURRENT_CALL.set(call)
        try:
            sdk = client
            while True:
                try:
                    data = wire.parse_response(await self._post(sdk, body))
                except wire.Malformed as e:  # a 200 the SDK accepted; retried here, on the call's one budget
                    call.failed("malformed response")
                    if call.attempts > call.budget:
                        raise fail("malformed response", "malformed response", str(e)) from None
                    cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (call.attempts - 1))
                    await asyncio.sleep(self._rng.uniform(0, cap))  # full jitter
                    sdk = client.with_options(max_retries=call.budget - call.attempts)
                    continue
                except openai.APIStatusError as e:
                    raise fail(e.status_code, f"HTTP {e.status_code}", self._error_detail(e.body)) from None
                except openai.APITimeoutError:
                    raise fail("timeout", "timeout") from None
                except openai.APIConnectionError:
                    raise fail("connection error", "connection error") from None
                except openai.OpenAIError as e:
                    raise fail(type(e).__name__, type(e).__name__, str(e)) from None
                if self._tpm is not None:
                    usage = data.get("usage") or {}
                    self._tpm.credit(estimate - int(usage.get("total_tokens") or estimate))
                return data, time.perf_counter() - call.started
        finally:
            CURRENT_CALL.reset(token)

    def _failure(
        self, call: Call, status: int | str, what: str, detail: str = "", where: str | None = None
    ) -> BackendError:
        """The BackendError for a call that failed for good (the SDK has stopped retrying, or we have)."""
        tail = f": {detail}" if detail else ""
        where = where or self.base_url or "https://api.openai.com/v1"  # named so an unreachable server is recognisable
        if call.attempts > call.budget:
            text = (
                f"{where} {call.label}: gave up after {call.attempts} attempts (max_retries={call.budget}); "
                f"last error {what}{tail}"
            )
        else:
            text = f"{where} {call.label}: {what} (not retried){tail}"
        return BackendError(self._redact(text), status=status, attempts=call.attempts)

    def _redact(self, text: str) -> str:
        key = self._api_key
        return text.replace(key, "***") if key and key != "EMPTY" and len(key) >= 4 else text

    def _error_detail(self, body: Any) -> str:
        msg = wire.error_message(body)
        return self._redact(str(msg)[:300]) if msg else ""

    def _completions(
        self, data: dict[str, Any], stop: list[str], latency: float, price_factor: float = 1.0
    ) -> list[Completion]:
        """Completions from a response body, each priced (``extra["cost_usd"]``, times ``price_factor``) by this
        backend's model or else the model the response names."""

        def cost(prompt_tokens: int, completion_tokens: int, named: str | None) -> float | None:
            c = pricing.cost(self.model_id, prompt_tokens, completion_tokens, self.prices)
            if c is None and named:
                c = pricing.cost(named, prompt_tokens, completion_tokens, self.prices)
            return None if c is None else c * price_factor

        return wire.completions_from_body(data, stop, latency, cost)


def endpoint_fault(status: int | str | None) -> bool:
    """Whether a failure with this status is the server's (another server may answer), not the request's."""
    if isinstance(status, int):
        return status >= 500 or status in (408, 409, 429)
    return status in ("timeout", "connection error", "malformed response")


BACKENDS.add("openai", OpenAIBackend)
