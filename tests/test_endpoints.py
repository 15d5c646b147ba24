"""A teacher over several OpenAI-compatible servers: requests spread by free room, a failing server taken out and back
after a pause, a request that failed on one answered by another, and resume/cache exactly as with one server."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import time

import pytest

from cotbridge.backends.base import Request
from cotbridge.backends.endpoint_pool import parse_endpoints
from cotbridge.backends.openai_api import BackendError, OpenAIBackend
from cotbridge.backends.oracle import OracleBackend
from cotbridge.errors import UserError
from cotbridge.server import running_server
from cotbridge.teach import run_teach
from tests.test_serve import WordsBackend
from tests.test_teach_http import TASK, teach_config

POOL_LOG = "cotbridge.backends.endpoint_pool"


def free_port() -> int:
    """A port nothing listens on (connections to it are refused) until a test starts a server there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend(urls, **kw):
    kw.setdefault("timeout_s", 5)
    kw.setdefault("backoff_base_s", 0.01)
    return OpenAIBackend("local-model", base_url=urls, **kw)


def chats(n, tag="q"):
    return [Request(messages=[{"role": "user", "content": f"{tag}{i}"}]) for i in range(n)]


def served(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_requests_spread_over_servers_by_their_concurrency(tmp_path):
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with (
        running_server(WordsBackend(gen_s=0.02), request_log=logs[0]) as a,
        running_server(WordsBackend(gen_s=0.02), request_log=logs[1]) as b,
    ):
        be = OpenAIBackend("m", endpoints=[{"url": a, "concurrency": 6}, {"url": b, "concurrency": 2}], timeout_s=5)
        out = be.generate(chats(80), progress=False)
    assert [c[0].text for c in out] == [f"answer 0 to q{i}" for i in range(80)]  # in order, whichever answered
    counts = [len(served(x)) for x in logs]
    assert sum(counts) == 80 and counts[0] > counts[1] >= 10  # the bigger server takes the bigger share
    assert [s["answered"] for s in be.endpoint_stats()] == counts


def test_a_dead_server_is_taken_out_and_its_requests_answered_by_the_other(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    log = tmp_path / "live.log"
    with running_server(WordsBackend(), request_log=log) as live:
        be = backend([dead, live], concurrency=2, endpoint_fail_after=3, endpoint_pause_s=60, endpoint_retries=0)
        out = be.generate(chats(30), progress=False)
        assert len(out) == 30 and all(c[0].text.startswith("answer 0 to q") for c in out)
        tried_dead = be.endpoint_stats()[0]["failed"]
        out = be.generate(chats(10, "r"), progress=False)  # a second batch: the dead one stays out, unasked
    stats = be.endpoint_stats()
    assert 3 <= tried_dead <= 4 and stats[0]["failed"] == tried_dead and stats[0]["answered"] == 0
    assert stats[1]["answered"] == len(served(log)) == 40
    assert be.usage.retries == tried_dead and be.usage.failed == 0  # each failure moved its request, and said so
    took_out = [r.getMessage() for r in caplog.records if r.name == POOL_LOG and "out for 60 s" in r.getMessage()]
    assert len(took_out) == 1 and dead in took_out[0]


def test_a_server_that_comes_back_is_probed_and_used_again(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    port = free_port()
    late = f"http://127.0.0.1:{port}/v1"
    with running_server(WordsBackend(gen_s=0.01)) as live:
        be = backend([late, live], concurrency=2, endpoint_fail_after=1, endpoint_pause_s=0.3, endpoint_retries=0)
        be.generate(chats(6), progress=False)
        assert be.endpoint_stats()[0]["answered"] == 0 and be.endpoints[0].out_until is not None
        time.sleep(0.4)
        log = tmp_path / "late.log"
        with running_server(WordsBackend(gen_s=0.01), port=port, request_log=log):
            out = be.generate(chats(40, "r"), progress=False)
    assert len(out) == 40
    assert len(served(log)) >= 10 and be.endpoints[0].out_until is None  # on probation, answered, back in service
    messages = [r.getMessage() for r in caplog.records if r.name == POOL_LOG]
    assert any("on probation" in m for m in messages) and any("back in service" in m for m in messages)


def test_when_no_server_answers_the_request_fails_in_one_line_within_max_retries():
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    be = backend(dead, max_retries=3, endpoint_pause_s=0.05, endpoint_retries=0, concurrency=1)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=r"no endpoint answered in 4 tries across 2 endpoints \(max_retries=3\)"):
        be.generate(chats(1), progress=False)
    assert time.perf_counter() - t0 < 10
    assert sum(s["failed"] for s in be.endpoint_stats()) == 4


def test_a_request_the_server_refuses_is_not_moved(tmp_path):
    """A 4xx other than 408/409/429 is the request's fault: another server would refuse it too."""
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with (
        running_server(WordsBackend(), model_name="words", request_log=logs[0]) as a,
        running_server(WordsBackend(), model_name="words", request_log=logs[1]) as b,
    ):
        be = OpenAIBackend("not-served", base_url=[a, b], timeout_s=5)
        with pytest.raises(BackendError, match="HTTP 404"):
            be.generate(chats(1), progress=False)
    assert sum(len(served(x)) for x in logs) == 1 and be.usage.retries == 0
    assert [s["failed"] for s in be.endpoint_stats()] == [0, 0]  # nobody's fault: no server is taken out


@pytest.mark.parametrize(
    ("base_url", "endpoints", "message"),
    [
        ("http://a/v1", ["http://b/v1"], "not both"),
        (None, [], "non-empty list"),
        (None, "http://a/v1", "non-empty list"),
        (["http://a/v1", "ftp://b"], None, r"base_url\[1\]: 'ftp://b' is not an http\(s\) URL"),
        (None, [{"url": "http://a/v1", "concurrency": 0}], r"endpoints\[0\].concurrency must be a whole number ≥ 1"),
        (None, [{"host": "a"}], r"endpoints\[0\]: an endpoint is a URL or \{url, concurrency\}"),
        (["http://a/v1", "http://a/v1/"], None, "lists http://a/v1 more than once"),
    ],
)
def test_bad_endpoint_lists_are_one_line_errors(base_url, endpoints, message):
    with pytest.raises(UserError, match=message):
        parse_endpoints(base_url, endpoints, 4)


def test_teach_resumes_from_its_cache_after_servers_are_added(tmp_path):
    """The servers are transport: adding one neither refuses the run's records nor misses its cache."""
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with running_server(OracleBackend(task=TASK), request_log=logs[0]) as a:
        first = run_teach(teach_config(tmp_path, a, max_retries=2), progress=False)
        records = tmp_path / "teacher" / "synthetic_arithmetic.jsonl"
        lines = records.read_text().splitlines()
        records.write_text("\n".join(lines[:25]) + "\n")  # as if the run died after 25 records were kept
        with running_server(OracleBackend(task=TASK), request_log=logs[1]) as b:
            cfg = teach_config(tmp_path, None, max_retries=2)
            cfg.teacher.options.pop("base_url")
            cfg.teacher.options["endpoints"] = [a, {"url": b, "concurrency": 4}]
            again = run_teach(cfg, progress=False)
    assert first["records"] == again["records"] == 60 and len(records.read_text().splitlines()) == 60
    assert len(served(logs[0])) == 60 and not served(logs[1])  # the 35 lost records came from the cache
    with sqlite3.connect(tmp_path / "cache.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 60


def test_teach_spreads_its_requests_over_two_servers(tmp_path):
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with (
        running_server(OracleBackend(task=TASK), request_log=logs[0], latency_ms=5) as a,
        running_server(OracleBackend(task=TASK), request_log=logs[1], latency_ms=5) as b,
    ):
        summary = run_teach(teach_config(tmp_path, [a, b], concurrency=4), progress=False)
    assert summary["records"] == 60 and summary["accuracy"] == 1.0
    counts = [len(served(x)) for x in logs]
    assert sum(counts) == 60 and min(counts) >= 20


def test_clients_for_many_endpoints_share_one_tls_context():
    """Reading the CA bundle takes ~20 ms, and a client is made per endpoint at every generate() call (a teach run
    makes one call a chunk): the context is built once per proxy setting, not once per client."""
    from cotbridge.backends.openai_attempts import ssl_context as _ssl_context

    _ssl_context.cache_clear()
    backend = OpenAIBackend("m", endpoints=[f"http://127.0.0.1:{9000 + i}/v1" for i in range(4)])
    clients = [backend._client(e) for e in backend.endpoints for _ in range(3)]
    assert _ssl_context.cache_info().misses == 1 and len(clients) == 12
