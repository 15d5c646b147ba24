"""Content-addressed request cache in SQLite (WAL), so no paid call is ever made twice.

The key covers the backend kind, model, prompt/messages and generation parameters and the sample
index — never credentials or the endpoint URL. Errors and empty outputs are never stored.

A response that was paid for must reach durable storage before the run moves on. When the cache cannot be written
(disk full, locked by another process, read-only), the response goes to a side file (``<cache>.pending.jsonl``, or
one in the temp folder when that fails too), fsynced, and the run stops before the next paid call with one line
naming the cache; the next run folds the side files into the cache before it asks for anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cotbridge.backends.base import Completion, Request, ResultCallback
from cotbridge.errors import UserError

log = logging.getLogger(__name__)
BUSY_TIMEOUT_S = 10.0  # a write waits this long for another process's lock before the cache counts as unwritable


class CacheUnwritable(UserError):
    """The request cache cannot take a response: the run stops before the next paid call (responses kept aside)."""


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
        # Only when set, so that the keys of every cache written before these fields existed stay as they were.
        **({"prompt_ids": req.prompt_ids} if req.prompt_ids is not None else {}),
        **({"token_ids": True} if req.token_ids else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    """A SQLite table key -> completion JSON. Safe for several processes writing at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self._unwritable: str | None = None  # why a write failed; from then on responses go to a side file
        self._aside_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as c:
                c.execute(
                    "CREATE TABLE IF NOT EXISTS completions "
                    "(key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
                )
            self._fold_side_files()
        except (OSError, sqlite3.Error) as e:
            raise UserError(
                f"{self.path}: cannot open the request cache ({_reason(e)}); free space or close the process "
                "holding it, or point $COTBRIDGE_CACHE (or the cache setting) at a writable file"
            ) from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, across processes
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> Completion | None:
        row = self._conn().execute("SELECT record FROM completions WHERE key = ?", (key,)).fetchone()
        return Completion(**json.loads(row[0])) if row else None

    def put(self, key: str, completion: Completion) -> bool:
        """Store a completion; raises CacheUnwritable (once) when the cache cannot take it, after keeping it aside."""
        if not completion.text.strip():
            return False  # an empty output is a failure to retry later, not an answer
        record = json.dumps(asdict(completion), ensure_ascii=False)
        if self._unwritable is None:
            try:
                self._conn().execute(
                    "INSERT OR IGNORE INTO completions (key, record, created) VALUES (?, ?, ?)",
                    (key, record, time.time()),
                )
                return True
            except (OSError, sqlite3.Error) as e:
                self._unwritable = _reason(e)
                side = self._keep_aside(key, record)
                raise CacheUnwritable(
                    f"{self.path}: the request cache cannot be written ({self._unwritable}); stopped before the next "
                    f"paid call, responses already paid for are kept in {side} and folded in by the next run: free "
                    "space, close the process holding the cache, or point the cache setting elsewhere, then rerun "
                    "the same command"
                ) from None
        self._keep_aside(key, record)  # a response still in flight after the run began to stop
        return True

    def side_files(self) -> list[Path]:
        """Where responses the cache could not take are kept: beside it, else in the temp folder."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return [
            self.path.with_name(self.path.name + ".pending.jsonl"),
            Path(tempfile.gettempdir()) / f"cotbridge-pending-{digest}.jsonl",
        ]

    def _keep_aside(self, key: str, record: str) -> Path:
        line = json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n"
        errors = []
        with self._aside_lock:
            for side in self.side_files():
                try:
                    with side.open("a", encoding="utf-8") as f:
                        f.write(line)
                        f.flush()
                        os.fsync(f.fileno())
                    return side
                except OSError as e:
                    errors.append(f"{side}: {_reason(e)}")
        raise CacheUnwritable(
            f"{self.path}: the request cache cannot be written ({self._unwritable}) and no side file can be "
            f"({'; '.join(errors)}): this response is lost; free space, then rerun the same command"
        )

    def _fold_side_files(self) -> None:
        """Responses an earlier run kept aside go into the cache before anything is asked again."""
        for side in self.side_files():
            if not side.exists():
                continue
            rows = []
            for line in side.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    rows.append((entry["key"], entry["record"], time.time()))
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by the crash that stopped the run
            with self._conn() as c:
                c.executemany("INSERT OR IGNORE INTO completions (key, record, created) VALUES (?, ?, ?)", rows)
            side.unlink()
            log.info("%s: folded %d responses kept aside in %s", self.path, len(rows), side)

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
            unwritable = None
            for j, comp in zip(run, comps):
                key = request_key(self.kind, self.model_id, requests[i], requests[i].first_sample + j, self.salt)
                try:
                    self.cache.put(key, comp)
                except CacheUnwritable as e:  # this request's other samples still go aside first
                    unwritable = e
                out[i][j] = comp
            if unwritable is not None:
                raise unwritable  # from on_result: the backend sends nothing new
            self.misses += len(run)
            pending[i] -= len(run)
            if pending[i] == 0 and on_result is not None:
                on_result(i, out[i])  # type: ignore[arg-type]

        if todo:
            results = self.backend.generate([sub for _, _, sub in todo], progress=progress, on_result=store)
            unwritable = None
            for t, comps in enumerate(results):  # backends that do not call on_result
                try:
                    store(t, comps)
                except CacheUnwritable as e:  # the rest still go aside before the run stops
                    unwritable = unwritable or e
            if unwritable is not None:
                raise unwritable
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


def _reason(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or e)
