"""Issue #24 (3): a paid response reaches durable storage before the run moves on. A request cache that cannot be
written (disk full, locked by another process) stops the run before the next paid call with one line naming the
cache; what was already paid for is kept in a side file that the next run folds in, so nothing is paid twice."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cotbridge.backends import request_cache
from cotbridge.backends.base import Completion
from cotbridge.backends.oracle import OracleBackend
from cotbridge.backends.request_cache import CacheUnwritable, RequestCache
from cotbridge.server import running_server
from cotbridge.teach import run_teach
from tests.test_teach_http import TASK, teach_config


class _FullDisk:
    """A connection whose INSERTs fail like SQLite's on a full disk once ``allowed`` of them went through."""

    def __init__(self, conn, budget):
        self.conn, self.budget = conn, budget

    def execute(self, sql, *args):
        if sql.startswith("INSERT"):
            if self.budget[0] <= 0:
                raise sqlite3.OperationalError("database or disk is full")
            self.budget[0] -= 1
        return self.conn.execute(sql, *args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.conn.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def _served(log):
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_disk_full_stops_before_the_next_paid_call_and_the_resume_pays_nothing_twice(tmp_path, monkeypatch):
    real_conn = RequestCache._conn
    budget = [15]
    monkeypatch.setattr(RequestCache, "_conn", lambda self: _FullDisk(real_conn(self), budget))
    log = tmp_path / "requests.log"
    cfg = teach_config(tmp_path / "run", None)
    with running_server(OracleBackend(task=TASK), request_log=log) as url:
        cfg.teacher.options["base_url"] = url
        with pytest.raises(CacheUnwritable) as e:
            run_teach(cfg, progress=False)
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path / "run" / "cache.sqlite") in msg and "disk is full" in msg
        first = len(_served(log))
        assert 15 < first < 60  # stopped early: not every request was sent
        side = tmp_path / "run" / "cache.sqlite.pending.jsonl"
        assert len(side.read_text().splitlines()) == first - 15  # every answered response beyond the cache is kept

        monkeypatch.setattr(RequestCache, "_conn", real_conn)  # space freed
        summary = run_teach(cfg, progress=False)
    assert summary["records"] == 60 and not side.exists()
    prompts = [json.dumps(e.get("body") or e, sort_keys=True) for e in _served(log)]
    assert len(_served(log)) == 60, "a request paid for before the stop was sent again"
    assert len(set(prompts)) == len(prompts)


def test_a_cache_locked_by_another_process_keeps_the_response_aside_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(request_cache, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the busy timeout
    comp = Completion(text="Paid for. Therefore, the answer is 4.", finish_reason="stop")
    with pytest.raises(CacheUnwritable, match=rf"^{path}: the request cache cannot be written \(database is locked\)"):
        cache.put("k1", comp)
    cache.put("k2", comp)  # a response still in flight goes aside without a second error
    aside = [json.loads(x)["key"] for x in (tmp_path / "cache.sqlite.pending.jsonl").read_text().splitlines()]
    assert aside == ["k1", "k2"]
    holder.execute("ROLLBACK")
    holder.close()
    again = RequestCache(path)  # the next run folds them in before asking for anything
    assert again.get("k1") == comp and again.get("k2") == comp
    assert not (tmp_path / "cache.sqlite.pending.jsonl").exists()


def test_when_no_side_file_can_be_written_the_error_says_the_response_is_lost(tmp_path, monkeypatch):
    cache = RequestCache(tmp_path / "cache.sqlite")
    monkeypatch.setattr(RequestCache, "_conn", lambda self: _FullDisk(sqlite3.connect(":memory:"), [0]))
    monkeypatch.setattr(RequestCache, "side_files", lambda self: [tmp_path / "no" / "such" / "dir" / "f.jsonl"])
    with pytest.raises(CacheUnwritable, match="no side file can be .*this response is lost"):
        cache.put("k", Completion(text="x", finish_reason="stop"))
