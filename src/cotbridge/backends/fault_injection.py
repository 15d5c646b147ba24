"""Fault injection for ``cotbridge serve``: the faults an API server shows a client, on demand, to test its retries.

``faults="rate=0.3,seed=0,kinds=429,500,hang,malformed,drop"`` makes a request, before any generation, answer 429
with ``Retry-After``, 500, hang past the client's timeout and then close, answer 200 with a malformed JSON body, or
drop the connection without a response. ``FaultInjector.draw`` picks the fault (a seeded RNG, so a run repeats) and
``FaultInjector.reply`` says what to send for it; the server sends it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cotbridge.backends.openai_wire import error_body, json_bytes
from cotbridge.errors import UserError

FAULT_KINDS = ("429", "500", "hang", "malformed", "drop")
MALFORMED_BODY = (
    b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "'
)


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


@dataclass
class FaultReply:
    """What the server does for a fault: send ``body`` with ``status`` and ``headers`` or, with no body, hold the
    connection ``hang_s`` seconds (or until the server stops) and drop it. ``status`` is what the request log says."""

    status: int | None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


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

    def reply(self, kind: str) -> FaultReply:
        if kind == "429":
            ra = self.spec.retry_after
            body = error_body("Rate limit reached (injected fault)", "rate_limit_error", code="rate_limit_exceeded")
            retry_after = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
            return FaultReply(429, json_bytes(body), {"Retry-After": retry_after})
        if kind == "500":
            return FaultReply(500, json_bytes(error_body("The server had an error (injected fault)", "server_error")))
        if kind == "malformed":
            return FaultReply(200, MALFORMED_BODY)
        return FaultReply(None, hang_s=self.spec.hang_s if kind == "hang" else 0.0)
