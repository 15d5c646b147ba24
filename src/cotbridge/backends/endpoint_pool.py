"""Several OpenAI-compatible endpoints behind one teacher: vLLM data-parallel replicas, several ``cotbridge serve``.

Each endpoint has its own concurrency (requests in flight there at once). A request goes to the endpoint with the
most free room (in flight / concurrency lowest; ties to the one sent the fewest so far), so equal replicas get equal
shares and a bigger one (a higher ``concurrency``) a bigger share. An endpoint whose requests fail ``fail_after``
times in a row (connection errors, timeouts, 5xx or 429 once the SDK's own retries are spent) is taken out for
``pause_s`` seconds; then it gets one probe request at a time: an answer puts it back, a failure takes it out again.
The request that failed goes to another endpoint (the backend bounds how often). With one endpoint nothing is ever
taken out: the SDK's retries are all there is, as before.

Which endpoint answered never enters the request cache's key or a run's fingerprint (``config.TRANSPORT_OPTIONS``), so
a run resumes, with its cache, after endpoints are added or removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from cotbridge.errors import UserError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Endpoint:
    url: str
    concurrency: int
    in_flight: int = 0
    sent: int = 0
    answered: int = 0
    failed: int = 0
    failures_in_row: int = 0
    out_until: float | None = None  # taken out until this clock time; then on probation until an answer
    probing: bool = False

    def capacity(self, now: float) -> int:
        if self.out_until is not None and now < self.out_until:
            return 0
        return 1 if self.probing or self.out_until is not None else self.concurrency

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "concurrency": self.concurrency, "answered": self.answered, "failed": self.failed}


def parse_endpoints(
    base_url: str | Sequence[str] | None, endpoints: Sequence[str | Mapping[str, Any]] | None, concurrency: int
) -> list[Endpoint]:
    """The endpoints from ``base_url`` (one URL or a list) or ``endpoints`` (URLs, or ``{url, concurrency}``
    mappings); ``concurrency`` is each one's unless it gives its own. Bad entries are a one-line UserError."""
    if endpoints is not None and base_url is not None:
        raise UserError("give the teacher's servers as base_url or as endpoints, not both")
    if endpoints is None:
        if base_url is None or isinstance(base_url, str):
            return [Endpoint(base_url.rstrip("/") if base_url else "", concurrency)]
        endpoints, where = list(base_url), "base_url"
    else:
        where = "endpoints"
    if isinstance(endpoints, (str, Mapping)) or not endpoints:
        raise UserError(f"{where} must be a non-empty list of server URLs, e.g. [http://10.0.0.1:8000/v1, ...]")
    out: list[Endpoint] = []
    for i, entry in enumerate(endpoints):
        url, own = _endpoint_entry(entry, f"{where}[{i}]")
        if own is not None and (isinstance(own, bool) or not isinstance(own, int) or own < 1):
            raise UserError(f"{where}[{i}].concurrency must be a whole number ≥ 1, got {own!r}")
        out.append(Endpoint(url, own or concurrency))
    urls = [e.url for e in out]
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise UserError(f"{where} lists {twice[0]} more than once: give each server once (raise its concurrency)")
    return out


def _endpoint_entry(entry: Any, where: str) -> tuple[str, Any]:
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - {"url", "concurrency"})
        if unknown or "url" not in entry:
            raise UserError(f"{where}: an endpoint is a URL or {{url, concurrency}}, got keys {sorted(entry)}")
        url, own = entry["url"], entry.get("concurrency")
    else:
        url, own = entry, None
    parsed = urlparse(str(url)) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"{where}: {url!r} is not an http(s) URL like http://10.0.0.1:8000/v1")
    return url.rstrip("/"), own


class EndpointPool:
    """Hands out endpoints with free room, and takes failing ones out for a while (see the module docstring)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        fail_after: int = 3,
        pause_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoints = list(endpoints)
        self.fail_after, self.pause_s, self.clock = fail_after, pause_s, clock
        self._changed: asyncio.Condition | None = None  # made in the running loop

    @property
    def several(self) -> bool:
        return len(self.endpoints) > 1

    def out(self) -> list[Endpoint]:
        now = self.clock()
        return [e for e in self.endpoints if e.out_until is not None and now < e.out_until]

    async def acquire(self, avoid: Endpoint | None = None) -> Endpoint:
        """An endpoint with free room, waiting for one; ``avoid`` (where a request just failed) only if none else."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            while True:
                now = self.clock()
                free = [e for e in self.endpoints if e.in_flight < e.capacity(now)]
                if free:
                    ep = min(free, key=lambda e: (e is avoid, e.in_flight / e.concurrency, e.sent))
                    if ep.out_until is not None and not ep.probing:
                        ep.probing = True
                        log.warning("endpoint %s: back after a %g s pause, on probation", ep.url, self.pause_s)
                    ep.in_flight += 1
                    ep.sent += 1
                    return ep
                back = [e.out_until for e in self.endpoints if e.out_until is not None and e.out_until > now]
                try:  # until a request finishes, or the first endpoint out comes back
                    await asyncio.wait_for(self._changed.wait(), timeout=min(back) - now if back else None)
                except asyncio.TimeoutError:
                    pass

    async def release(self, ep: Endpoint, failed: bool | None) -> None:
        """``failed``: True for the endpoint's fault, False for an answer, None for neither (a refused request)."""
        assert self._changed is not None
        async with self._changed:
            ep.in_flight -= 1
            if failed is False:
                ep.answered += 1
                ep.failures_in_row = 0
                if ep.out_until is not None:
                    log.warning("endpoint %s: answered again, back in service", ep.url)
                ep.out_until, ep.probing = None, False
            elif failed:
                ep.failed += 1
                ep.failures_in_row += 1
                if self.several and (ep.probing or (ep.out_until is None and ep.failures_in_row >= self.fail_after)):
                    ep.out_until, ep.probing = self.clock() + self.pause_s, False
                    log.warning(
                        "endpoint %s: %d failures in a row, out for %g s (%d of %d endpoints out)",
                        ep.url,
                        ep.failures_in_row,
                        self.pause_s,
                        len(self.out()),
                        len(self.endpoints),
                    )
            self._changed.notify_all()
