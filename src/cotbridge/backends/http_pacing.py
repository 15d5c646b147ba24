"""HTTP pacing for API backends: a token bucket for requests / tokens per minute, the server's ``Retry-After`` read
for the retry log, and whether a URL is this machine or its network (a local server needs no API key)."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import urlparse

from cotbridge.errors import UserError


class AsyncTokenBucket:
    """``per_minute`` units a minute, smoothed: the bucket holds at most ``burst_s`` seconds' worth.

    A take larger than the bucket waits for a full bucket and leaves it in debt, so the long-run
    rate holds for any size. State lives across event loops; call ``bind()`` inside each new loop.
    """

    def __init__(self, per_minute: float, burst_s: float = 1.0):
        if per_minute <= 0:
            raise UserError(f"rate limit must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = self.rate * burst_s
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock: asyncio.Lock | None = None

    def bind(self) -> None:
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        if self._lock is None:
            self.bind()
        async with self._lock:  # type: ignore[union-attr]  # FIFO: waiters are served in order
            while True:
                self._refill()
                need = min(amount, self.capacity)
                if self.tokens >= need:
                    self.tokens -= amount
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)

    def credit(self, amount: float) -> None:
        """Give back (or, negative, charge) units once the true size of a take is known."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens + amount)


def is_local_url(url: str | None, loopback_only: bool = False) -> bool:
    """This machine (or, unless ``loopback_only``, a private network address)."""
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or (not loopback_only and (ip.is_private or ip.is_unspecified))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date.

    Only for the retry log: the SDK reads these headers itself to decide how long to wait."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
