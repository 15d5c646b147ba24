"""Content-addressed request cache in SQLite (WAL), so no paid call is ever made twice.

The key covers the backend kind, model, prompt/messages and generation parameters and the sample
index — never credentials or the endpoint URL. Errors and empty outputs are never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cotbridge.backends.base import Completion, Request, ResultCallback
from cotbridge.errors import UserError

log = logging.getLogger(__name__)


def default_cache_path() -> Path:
    """$COTBRIDGE_CACHE, else ~/.cache/cotbridge/requests.sqlite."""
    return Path(os.environ.get("COTBRIDGE_CACHE", Path.home() / ".cache" / "cotbridge" / "requests.sqlite"))


def request_key(kind: str, model: str, req: Request, sample_index: int, salt: str | None = None) -> str:
    """``salt``: what else the outputs depend on that the model's name does not say (an evaluation's weight files
    and dtype); keys without one are those of every cache written before it existed."""
    payload = {
        "kind": kind,
        "model": model,
        "prompt": req.prompt,
        "messages": req.messages,
        "continue_final": req.continue_final,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_tokens": req.max_tokens,
        "stop": list(req.stop),
        "seed": req.seed,
        "sample": sample_index,
        **({"salt": salt} if salt is not None else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    """A SQLite table key -> completion JSON. Safe for several processes writing at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as c:
                c.execute(
                    "CREATE TABLE IF NOT EXISTS completions "
                    "(key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
                )
        except (OSError, sqlite3.Error) as e:
            raise UserError(
                f"{self.path}: cannot open the request cache ({getattr(e, 'strerror', None) or e}); point "
                "$COTBRIDGE_CACHE (or the cache setting) at a writable file"
            ) from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, across processes
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> Completion | None:
        row = self._conn().execute("SELECT record FROM completions WHERE key = ?", (key,)).fetchone()
        return Completion(**json.loads(row[0])) if row else None

    def put(self, key: str, completion: Completion) -> bool:
        if not completion.text.strip():
            return False  # an empty output is a failure to retry later, not an answer
        record = json.dumps(asdict(completion), ensure_ascii=False)
        self._conn().execute(
            "INSERT OR IGNORE INTO completions (key, record, created) VALUES (?, ?, ?)", (key, record, time.time())
        )
        return True

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM completions").fetchone()[0]


class CachedBackend:
    """Wraps a backend: samples already in the cache are served from it; only the rest are requested."""

    def __init__(self, backend: Any, cache: RequestCache, salt: str | None = None):
        self.backend, self.cache, self.salt = backend, cache, salt
        self.kind, self.model_id = backend.kind, backend.model_id
        self.hits = self.misses = 0

    @property
    def keeping_prefixes(self) -> Any:
        """The wrapped backend's, if it has one: two-stage calls keep stage 1's keys/values through it."""
        return getattr(self.backend, "keeping_prefixes", None)

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        out: list[list[Completion | None]] = []
        todo: list[tuple[int, list[int], Request]] = []  # (request index, sample indices, sub-request)
        for i, req in enumerate(requests):
            keys = [request_key(self.kind, self.model_id, req, req.first_sample + j, self.salt) for j in range(req.n)]
            found = [self.cache.get(k) for k in keys]
            self.hits += sum(c is not None for c in found)
            out.append(found)
            for run in contiguous_runs([j for j, c in enumerate(found) if c is None]):
                todo.append((i, run, _sub_request(req, run)))
        pending = {i: sum(len(run) for j, run, _ in todo if j == i) for i in range(len(requests))}
        for i, n in pending.items():
            if n == 0 and on_result is not None:
                on_result(i, out[i])  # type: ignore[arg-type]

        stored: set[int] = set()

        def store(t: int, comps: list[Completion]) -> None:
            if t in stored:
                return
            stored.add(t)
            i, run, sub = todo[t]
            for j, comp in zip(run, comps):
                key = request_key(self.kind, self.model_id, requests[i], requests[i].first_sample + j, self.salt)
                self.cache.put(key, comp)
                out[i][j] = comp
            self.misses += len(run)
            pending[i] -= len(run)
            if pending[i] == 0 and on_result is not None:
                on_result(i, out[i])  # type: ignore[arg-type]

        if todo:
            results = self.backend.generate([sub for _, _, sub in todo], progress=progress, on_result=store)
            for t, comps in enumerate(results):  # backends that do not call on_result
                store(t, comps)
        missing = [i for i, comps in enumerate(out) if any(c is None for c in comps)]
        if missing:
            raise RuntimeError(f"backend {self.kind} returned no completion for {len(missing)} request(s)")
        return out  # type: ignore[return-value]


def contiguous_runs(indices: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for j in indices:
        if runs and runs[-1][-1] == j - 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return runs


def _sub_request(req: Request, run: list[int]) -> Request:
    from dataclasses import replace

    return replace(req, n=len(run), first_sample=req.first_sample + run[0])
