"""OpenAIBackend retries: the SDK retries HTTP errors, timeouts and connection errors; the backend retries only
malformed 200 bodies, on the same max_retries budget; rate limits apply to every attempt, the SDK's retries
included."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest

from cotbridge.backends.base import Request
from cotbridge.backends.openai_api import BackendError, OpenAIBackend
from cotbridge.server import running_server
from tests.test_serve import WordsBackend

KEY_ENV = "COTBRIDGE_TEST_OPENAI_KEY"
LOGGER = "cotbridge.backends.openai_api"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-retries-0000")


def client(url, **kw):
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return OpenAIBackend("local-model", base_url=url, api_key_env=KEY_ENV, **kw)


def chat(text):
    return Request(messages=[{"role": "user", "content": text}])


def retry_warnings(caplog):
    return [
        r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING and "retry" in r.getMessage()
    ]


def test_the_sdk_client_retries_with_the_backends_settings():
    be = client("http://127.0.0.1:9/v1", max_retries=4, timeout_s=7)
    sdk = be._client()
    try:
        assert sdk.max_retries == 4 and sdk.timeout == 7
    finally:
        asyncio.run(sdk.close())


def test_malformed_and_sdk_retries_share_one_budget(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    log = tmp_path / "requests.jsonl"
    # seed 5 draws malformed, then 500s: our retry first, then the SDK's, which must get only what is left
    with running_server(WordsBackend(), faults="rate=1,seed=5,kinds=500,malformed", request_log=log) as url:
        be = client(url, max_retries=2)
        with pytest.raises(
            BackendError, match="gave up after 3 attempts \\(max_retries=2\\); last error HTTP 500"
        ) as e:
            be.generate([chat("q")], progress=False)
    faults = [json.loads(line)["fault"] for line in log.read_text().splitlines()]
    assert faults == ["malformed", "500", "500"]  # 3 attempts in all, not 1 + (1 + 2)
    assert e.value.attempts == 3 and be.usage.retries == 2 and be.usage.failed == 1
    messages = [w.getMessage() for w in retry_warnings(caplog)]
    assert (
        len(messages) == 2 and "malformed response; retry 1/2" in messages[0] and "HTTP 500; retry 2/2" in messages[1]
    )


def test_rate_limit_applies_to_the_sdks_retries(tmp_path):
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), faults="rate=1,kinds=429,max=2,retry_after=0.01", request_log=log) as url:
        be = client(url, rpm=120, max_retries=3)  # 2 a second, at most 1 second's worth (2) at once
        (comps,) = be.generate([chat("q")], progress=False)
    assert comps[0].text == "answer 0 to q" and be.usage.retries == 2
    times = [json.loads(line)["time"] for line in log.read_text().splitlines()]
    assert len(times) == 3 and times[2] - times[0] >= 0.4  # the 3rd attempt waits for a token; Retry-After is 0.01 s


def test_connection_refused_is_retried_by_the_sdk_then_fails(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    be = client(f"http://127.0.0.1:{port}/v1", max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="gave up after 2 attempts .*connection error") as e:
        be.generate([chat("q")], progress=False)
    assert e.value.status == "connection error" and e.value.attempts == 2
    (w,) = retry_warnings(caplog)
    assert "connection error; retry 1/1" in w.getMessage()
    assert time.perf_counter() - t0 < 5
