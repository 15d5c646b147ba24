"""OpenAIBackend against a real local server (cotbridge.server.running_server): round trips, retries with
fault injection, Retry-After, key hygiene, on_result and rate limits (the Batch API files and pricing:
test_openai_batch_and_pricing.py)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time

import pytest

from cotbridge.backends import BACKENDS, pricing
from cotbridge.backends.base import Request
from cotbridge.backends.http_pacing import AsyncTokenBucket, is_local_url, parse_retry_after
from cotbridge.backends.openai_api import BackendError, OpenAIBackend
from cotbridge.errors import UserError
from cotbridge.server import running_server
from tests.test_serve import WordsBackend

KEY_ENV = "COTBRIDGE_TEST_OPENAI_KEY"
SECRET = "sk-test-SECRET-7f3a9c1e5b"
LOGGER = "cotbridge.backends.openai_api"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def client(url, model="gpt-4o-mini", **kw):
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return OpenAIBackend(model, base_url=url, api_key_env=KEY_ENV, **kw)


def log_entries(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def retry_warnings(caplog):
    return [
        r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING and "retry" in r.getMessage()
    ]


def chat(text, **kw):
    return Request(messages=[{"role": "user", "content": text}], **kw)


def test_registered_as_openai():
    import cotbridge.backends.openai_api  # noqa: F401  (registration side effect)

    assert BACKENDS.get("openai") is OpenAIBackend and OpenAIBackend.kind == "openai"


# -- round trips -------------------------------------------------------------------------------------
def test_chat_and_completions_round_trip():
    backend = WordsBackend()
    with running_server(backend) as url:
        chat_out = client(url).generate([chat("hello there"), Request(prompt="plain prompt")], progress=False)
        comp_out = client(url, api="completions").generate([Request(prompt="raw text")], progress=False)
    assert [c[0].text for c in chat_out] == ["answer 0 to hello there", "answer 0 to plain prompt"]
    assert comp_out[0][0].text == "answer 0 to raw text" and comp_out[0][0].finish_reason == "stop"
    # a plain prompt on the chat API becomes one user message
    assert [{"role": "user", "content": "plain prompt"}] in [r.messages for r in backend.requests[:2]]
    assert backend.requests[2].prompt == "raw text" and backend.requests[2].messages is None
    assert chat_out[0][0].latency_s > 0


def test_a_local_server_is_reached_past_a_proxy_in_the_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: a proxied call would fail
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with running_server(WordsBackend()) as url:
        [[c]] = client(url, max_retries=0).generate([chat("hi")], progress=False)
    assert c.text == "answer 0 to hi"


def test_n3_returns_three_choices_and_tokens_split_evenly():
    with running_server(WordsBackend()) as url:
        be = client(url)
        (comps,) = be.generate([chat("a b c d", n=3, temperature=0.7)], progress=False)
    assert [c.text for c in comps] == ["answer 0 to a b c d", "answer 1 to a b c d", "answer 2 to a b c d"]
    # the server billed the 4-word prompt once; split over the 3 completions it still sums to 4
    assert sum(c.prompt_tokens for c in comps) == 4 and [c.completion_tokens for c in comps] == [7, 7, 7]
    assert be.usage.requests == 1 and be.usage.prompt_tokens == 4 and be.usage.completion_tokens == 21


def test_a_server_returning_fewer_choices_is_asked_again(tmp_path):
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(max_n=1), request_log=log) as url:
        (comps,) = client(url).generate([chat("q", n=3, temperature=1.0, seed=9)], progress=False)
    assert len(comps) == 3
    bodies = [e["body"] for e in log_entries(log)]
    assert [b["n"] for b in bodies] == [3, 2, 1]
    assert len({b["seed"] for b in bodies}) == 3  # each top-up call gets its own seed


def test_stop_strings_honoured_beyond_the_apis_four(tmp_path):
    log = tmp_path / "requests.jsonl"
    stops = ["<1>", "<2>", "<3>", "<4>", "END", "<6>"]
    with running_server(WordsBackend(respond=lambda p, r, j: "the answer is 7 END and more"), request_log=log) as url:
        (comps,) = client(url).generate([chat("q", stop=stops)], progress=False)
    assert comps[0].text == "the answer is 7 " and comps[0].finish_reason == "stop"
    assert log_entries(log)[0]["body"]["stop"] == stops[:4]  # only 4 sent; the 5th applied locally


def test_finish_reason_length():
    with running_server(WordsBackend(respond=lambda p, r, j: "one two three four five")) as url:
        (comps,) = client(url).generate([chat("q", max_tokens=2)], progress=False)
    assert comps[0].text == "one two" and comps[0].finish_reason == "length" and comps[0].completion_tokens == 2


def test_usage_and_cost_accounting():
    with running_server(WordsBackend()) as url:
        be = client(url, model="gpt-4o-mini")
        out = be.generate([chat("a b", n=2), chat("c")], progress=False)
        free = client(url, model="local-llama")
        free.generate([chat("x")], progress=False)
    comps = [c for cs in out for c in cs]
    assert be.usage.requests == 2 and be.usage.retries == 0 and be.usage.failed == 0
    assert be.usage.prompt_tokens == 3 and be.usage.completion_tokens == sum(c.completion_tokens for c in comps) == 14
    expected = pricing.cost("gpt-4o-mini", 3, 14)
    assert be.usage.cost_usd == pytest.approx(expected) and sum(c.extra["cost_usd"] for c in comps) == pytest.approx(
        expected
    )
    assert free.usage.cost_usd is None and free.usage.as_dict()["completion_tokens"] == 4


def test_request_log_matches_what_was_sent(tmp_path):
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), request_log=log) as url:
        client(url, model="teacher-x").generate(
            [chat("q1", n=2, temperature=0.7, top_p=0.95, max_tokens=77, stop=["\n\n", "Q:"], seed=3, first_sample=4)],
            progress=False,
        )
        client(url, model="teacher-x", api="completions").generate([Request(prompt="p", max_tokens=5)], progress=False)
    chat_body, comp_body = (e["body"] for e in log_entries(log))
    assert chat_body == {
        "model": "teacher-x",
        "messages": [{"role": "user", "content": "q1"}],
        "n": 2,
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 77,
        "stop": ["\n\n", "Q:"],
        "seed": 3 * 100_003 + 4,
    }
    assert comp_body == {
        "model": "teacher-x",
        "prompt": "p",
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 5,
    }


def test_max_tokens_parameter_choice():
    assert client("http://127.0.0.1:9/v1").token_param == "max_tokens"
    official = OpenAIBackend("gpt-4o-mini", api_key_env=KEY_ENV)
    assert official.token_param == "max_completion_tokens"
    assert "max_completion_tokens" in official.request_body(chat("q"))
    assert OpenAIBackend("gpt-4o-mini", api_key_env=KEY_ENV, api="completions").token_param == "max_tokens"
    assert (
        client("http://127.0.0.1:9/v1", max_tokens_param="max_completion_tokens").token_param
        == "max_completion_tokens"
    )


def test_reasoning_content_lands_in_extra():
    with running_server(WordsBackend()) as url:
        (comps,) = client(url).generate([chat("think first")], progress=False)
    assert comps[0].extra["reasoning"] == "thinking about think first"


def test_bad_input_fails_before_any_call(tmp_path):
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), request_log=log) as url:
        with pytest.raises(UserError, match="api='completions' takes plain prompts"):
            client(url, api="completions").generate([Request(prompt="ok"), chat("messages")], progress=False)
        with pytest.raises(UserError, match="cannot continue a final assistant message"):
            OpenAIBackend("gpt-4o-mini", api_key_env=KEY_ENV).generate(
                [Request(messages=[{"role": "assistant", "content": "x"}], continue_final=True)], progress=False
            )
    assert not log.exists() or log.read_text() == ""


def test_continue_final_is_sent_to_compatible_servers():
    backend = WordsBackend()
    with running_server(backend) as url:
        client(url).generate(
            [
                Request(
                    messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "A:"}],
                    continue_final=True,
                )
            ],
            progress=False,
        )
    assert backend.requests[0].continue_final


def test_generate_works_inside_a_running_event_loop():
    with running_server(WordsBackend()) as url:
        be = client(url)

        async def main():
            return be.generate([chat("from async")], progress=False)

        assert asyncio.run(main())[0][0].text == "answer 0 to from async"


# -- retries and faults -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["429", "500", "malformed", "drop", "hang"])
def test_each_fault_kind_is_retried_then_succeeds(kind, caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    log = tmp_path / "requests.jsonl"
    faults = f"rate=1,kinds={kind},max=2,retry_after=0.1,hang_s=1.5"
    with running_server(WordsBackend(), faults=faults, request_log=log) as url:
        be = client(url, timeout_s=0.3, max_retries=4)
        (comps,) = be.generate([chat("q")], progress=False)
    assert comps[0].text == "answer 0 to q"
    warnings = retry_warnings(caplog)
    assert be.usage.retries == len(warnings) == 2
    assert "retry 1/4" in warnings[0].getMessage() and "retry 2/4" in warnings[1].getMessage()
    label = {
        "429": "HTTP 429",
        "500": "HTTP 500",
        "malformed": "malformed response",
        "drop": "connection error",
        "hang": "timeout",
    }[kind]
    assert all(label in w.getMessage() for w in warnings)
    assert [e["fault"] for e in log_entries(log)] == [kind, kind, None]


def test_retry_after_is_honoured(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with running_server(WordsBackend(), faults="rate=1,kinds=429,max=1,retry_after=0.3") as url:
        be = client(url, backoff_base_s=0.001)
        t0 = time.perf_counter()
        be.generate([chat("q")], progress=False)
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.3
    (w,) = retry_warnings(caplog)
    assert "Retry-After 0.3 s" in w.getMessage()


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= parse_retry_after({"retry-after": future}) <= 31
    assert parse_retry_after({"retry-after": "not a date"}) is None and parse_retry_after({}) is None


def test_non_retryable_400_raises_at_once(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), request_log=log) as url:
        be = client(url, max_retries=5)
        with pytest.raises(BackendError, match="HTTP 400 \\(not retried\\): temperature must be") as e:
            be.generate([chat("q", temperature=3.0)], progress=False)
    assert e.value.status == 400 and e.value.attempts == 1
    assert retry_warnings(caplog) == [] and len(log_entries(log)) == 1


def test_exhausted_retries_raise_backend_error(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), faults="rate=1,kinds=500", request_log=log) as url:
        be = client(url, max_retries=2)
        with pytest.raises(BackendError, match="gave up after 3 attempts .* HTTP 500") as e:
            be.generate([chat("q")], progress=False)
    assert e.value.status == 500 and e.value.attempts == 3 and isinstance(e.value, RuntimeError)
    assert len(retry_warnings(caplog)) == 2 and len(log_entries(log)) == 3
    assert be.usage.failed == 1


def test_finished_requests_are_delivered_even_when_another_fails():
    # request 1's prompt makes the server reject it (400); the others still reach on_result
    got = {}
    with running_server(WordsBackend()) as url:
        be = client(url, concurrency=1)
        reqs = [chat("ok 0"), chat("bad", temperature=9.0), chat("ok 2")]
        with pytest.raises(BackendError):
            be.generate(reqs, progress=False, on_result=lambda i, comps: got.setdefault(i, comps))
    assert 0 in got and 1 not in got


def test_on_result_called_once_per_request_under_faults():
    calls = []
    with running_server(WordsBackend(), faults="rate=0.4,seed=1,kinds=429,500,malformed,drop,retry_after=0.01") as url:
        be = client(url, concurrency=4, max_retries=8)
        out = be.generate(
            [chat(f"q{i}") for i in range(12)], progress=False, on_result=lambda i, comps: calls.append((i, comps))
        )
    assert sorted(i for i, _ in calls) == list(range(12))
    assert all(out[i] is comps for i, comps in calls)
    assert be.usage.retries > 0


# -- the API key ---------------------------------------------------------------------------------------
def test_api_key_never_in_logs_request_log_or_errors(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    log = tmp_path / "requests.jsonl"
    with running_server(
        WordsBackend(), faults="rate=1,kinds=429,500,drop,malformed,retry_after=0", request_log=log
    ) as url:
        be = client(url, max_retries=3)
        with pytest.raises(BackendError) as e:
            be.generate([chat("q")], progress=False)
        with pytest.raises(BackendError) as e400:
            client(url).generate([chat("q", temperature=7.0)], progress=False)
    assert retry_warnings(caplog)
    for text in (caplog.text, str(e.value), repr(e.value), str(e400.value), log.read_text(), repr(be)):
        assert SECRET not in text
    assert "Authorization" not in log.read_text()


def test_missing_key_is_an_error_for_remote_servers_only(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="set the environment variable OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini")
    with pytest.raises(UserError, match="NOPE_KEY"):
        OpenAIBackend("m", base_url="https://api.example.com/v1", api_key_env="NOPE_KEY")
    assert OpenAIBackend("m", base_url="http://127.0.0.1:8000/v1")._api_key == "EMPTY"
    assert is_local_url("http://localhost:1234/v1") and is_local_url("http://10.1.2.3/v1")
    assert not is_local_url("https://api.openai.com/v1") and not is_local_url(None)


# -- rate limits ------------------------------------------------------------------------------------------
def test_rpm_limiter_spaces_requests(tmp_path):
    log = tmp_path / "requests.jsonl"
    with running_server(WordsBackend(), request_log=log) as url:
        be = client(url, concurrency=10, rpm=300)  # 5 a second, at most 1 second's worth at once
        t0 = time.perf_counter()
        be.generate([chat(f"q{i}") for i in range(10)], progress=False)
        elapsed = time.perf_counter() - t0
    times = sorted(e["time"] for e in log_entries(log))
    assert elapsed >= 0.9 and times[-1] - times[0] >= 0.9
    assert times[4] - times[0] < 0.15  # a burst of one second's worth (5) ...
    gaps = [b - a for a, b in zip(times[5:], times[6:])]
    assert min(gaps) >= 0.1  # ... then one every 0.2 s (slack for scheduling)


def test_token_bucket_tpm_takes_larger_than_the_bucket():
    async def run():
        bucket = AsyncTokenBucket(per_minute=600)  # 10 a second, bucket of 10
        bucket.bind()
        t0 = time.perf_counter()
        await bucket.acquire(15)  # bigger than the bucket: goes at once, leaves a debt of 5
        await bucket.acquire(5)  # waits for the debt plus 5: ~1 s
        return time.perf_counter() - t0

    assert 0.9 <= asyncio.run(run()) < 1.5


# -- a real model behind the server ------------------------------------------------------------------
def test_tiny_model_through_the_api(tiny_backend):
    with running_server(tiny_backend) as url:
        be = client(url, model="tiny", timeout_s=60)
        chat_out = be.generate(
            [chat("Q: Tom has 3 apples.", n=2, max_tokens=4, temperature=1.0, seed=2)], progress=False
        )
        comp_out = client(url, model="tiny", api="completions", timeout_s=60).generate(
            [Request(prompt="Q: Tom has 3 apples.", max_tokens=3)], progress=False
        )
    assert len(chat_out[0]) == 2 and all(c.finish_reason in ("stop", "length") for c in chat_out[0])
    assert be.usage.prompt_tokens > 0 and 0 < be.usage.completion_tokens <= 8
    assert be.usage.cost_usd is None  # no price for a local model
    assert comp_out[0][0].finish_reason in ("stop", "length")
