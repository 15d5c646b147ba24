"""`cotbridge serve`: the OpenAI-compatible server over a Backend — shapes, request log, faults, lock vs latency."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from cotbridge.backends.base import Completion
from cotbridge.errors import UserError
from cotbridge.server import FaultSpec, OpenAICompatServer, canonical_sha256, parse_faults, running_server


class WordsBackend:
    """Deterministic text, one word = one token; honours max_tokens ("length"), not stop strings.

    ``max_n`` caps the choices returned (a server that ignores n); ``gen_s`` sleeps inside generate;
    prompts containing "think" get a reasoning trace in ``extra``.
    """

    kind = "words"
    model_id = "words-model"

    def __init__(self, respond=None, max_n=None, gen_s=0.0):
        self.respond = respond or (lambda prompt, req, j: f"answer {j} to {prompt}")
        self.max_n, self.gen_s = max_n, gen_s
        self.requests = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()

    def generate(self, requests, progress=True, on_result=None):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.gen_s:
                time.sleep(self.gen_s)
            self.requests.extend(requests)
            out = []
            for r in requests:
                prompt = r.prompt if r.prompt is not None else r.messages[-1]["content"]
                comps = []
                for j in range(min(r.n, self.max_n or r.n)):
                    words = self.respond(prompt, r, j).split(" ")
                    finish = "length" if len(words) > r.max_tokens else "stop"
                    words = words[: r.max_tokens]
                    extra = {"reasoning": f"thinking about {prompt}"} if "think" in prompt else {}
                    comps.append(Completion(" ".join(words), finish, len(prompt.split()), len(words), 0.0, extra))
                out.append(comps)
            return out
        finally:
            with self._lock:
                self.active -= 1


def call(url, path, body=None, headers=None, timeout=5.0, raw=None):
    """(status, headers, parsed JSON or raw bytes) for GET (body None) or POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, hdrs, content = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, content = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(content)
    except json.JSONDecodeError:
        return status, hdrs, content


CHAT = {"model": "m", "messages": [{"role": "user", "content": "two plus two"}], "max_tokens": 50}


# -- fault spec parsing ------------------------------------------------------------------------------
def test_parse_faults_reads_every_key():
    spec = parse_faults("rate=0.3,seed=7,kinds=429,500,hang,retry_after=0.2,hang_s=2,max=3")
    assert spec == FaultSpec(rate=0.3, seed=7, kinds=("429", "500", "hang"), retry_after=0.2, hang_s=2.0, max=3)
    assert parse_faults("rate=1,kinds=malformed|drop").kinds == ("malformed", "drop")
    assert parse_faults("rate=0.5").kinds == ("429", "500", "hang", "malformed", "drop")
    assert parse_faults(None) is None and parse_faults("  ") is None


@pytest.mark.parametrize(
    "spec,message",
    [
        ("rate=0.3,kinds=429,teapot", "unknown fault kind(s) 'teapot'"),
        ("rate=0.3,kinds=", "kinds= names no kind"),
        ("rate=2", "between 0 and 1"),
        ("rate=0.1,bogus=1", "unknown key 'bogus'"),
        ("rate=abc", "rate='abc' is not a valid float"),
        ("429,rate=0.1", "'429' is not key=value"),
    ],
)
def test_parse_faults_is_strict(spec, message):
    with pytest.raises(UserError) as e:
        parse_faults(spec)
    assert message in str(e.value)


# -- endpoints ---------------------------------------------------------------------------------------
def test_health_and_models():
    with running_server(WordsBackend()) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert call(url, "/health")[2] == call(url.removesuffix("/v1"), "/health")[2] == {"status": "ok"}
        status, _, body = call(url, "/models")
        assert status == 200 and body["data"][0]["id"] == "words-model"
        assert call(url, "/nope")[0] == 404


def test_chat_round_trip_shape_usage_and_stop():
    backend = WordsBackend(respond=lambda p, r, j: f"sample {j} says four ### ignored tail")
    with running_server(backend) as url:
        body = {**CHAT, "n": 2, "temperature": 0.7, "top_p": 0.9, "stop": ["###"], "seed": 5}
        status, _, resp = call(url, "/chat/completions", body)
    assert status == 200 and resp["object"] == "chat.completion" and resp["model"] == "m"
    assert [c["index"] for c in resp["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in resp["choices"]] == ["sample 0 says four ", "sample 1 says four "]
    assert all(c["finish_reason"] == "stop" and c["message"]["role"] == "assistant" for c in resp["choices"])
    # usage: the prompt once, completion tokens summed over choices
    assert resp["usage"] == {"prompt_tokens": 3, "completion_tokens": 14, "total_tokens": 17}
    (req,) = backend.requests
    assert (req.n, req.temperature, req.top_p, req.max_tokens, req.stop, req.seed) == (2, 0.7, 0.9, 50, ["###"], 5)
    assert req.messages == [{"role": "user", "content": "two plus two"}]


def test_max_completion_tokens_length_and_continue_final():
    backend = WordsBackend(respond=lambda p, r, j: "one two three four five six")
    with running_server(backend) as url:
        msgs = [{"role": "user", "content": "count"}, {"role": "assistant", "content": "one"}]
        status, _, resp = call(
            url,
            "/chat/completions",
            {"model": "m", "messages": msgs, "max_completion_tokens": 3, "continue_final_message": True},
        )
    assert status == 200 and resp["choices"][0]["finish_reason"] == "length"
    assert resp["choices"][0]["message"]["content"] == "one two three"
    assert backend.requests[0].continue_final and backend.requests[0].max_tokens == 3


def test_completions_with_a_list_of_prompts():
    backend = WordsBackend()
    with running_server(backend) as url:
        status, _, resp = call(url, "/completions", {"model": "m", "prompt": ["a b", "c"], "n": 2, "max_tokens": 10})
    assert status == 200 and resp["object"] == "text_completion"
    assert [c["text"] for c in resp["choices"]] == [
        "answer 0 to a b",
        "answer 1 to a b",
        "answer 0 to c",
        "answer 1 to c",
    ]
    assert [c["index"] for c in resp["choices"]] == [0, 1, 2, 3]
    assert resp["usage"]["prompt_tokens"] == 3 and resp["usage"]["completion_tokens"] == 5 + 5 + 4 + 4


def test_reasoning_is_returned_as_reasoning_content():
    with running_server(WordsBackend()) as url:
        _, _, resp = call(url, "/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "think hard"}]})
    assert resp["choices"][0]["message"]["reasoning_content"] == "thinking about think hard"


@pytest.mark.parametrize(
    "body,raw,status,fragment",
    [
        (None, b"{not json", 400, "not valid JSON"),
        ({"model": "m"}, None, 400, "messages must be a non-empty list"),
        ({**CHAT, "temperature": 5}, None, 400, "temperature must be a number"),
        ({**CHAT, "stream": "yes"}, None, 400, "stream must be true or false"),
        ({**CHAT, "tools": []}, None, 400, "unsupported parameter 'tools'"),
        ({**CHAT, "stop": [1]}, None, 400, "stop must be a string"),
        ([1, 2], None, 400, "must be a JSON object"),
    ],
)
def test_bad_requests_get_openai_style_errors(body, raw, status, fragment):
    backend = WordsBackend()
    with running_server(backend) as url:
        got, _, resp = call(url, "/chat/completions", body, raw=raw)
    assert got == status and fragment in resp["error"]["message"]
    assert backend.requests == []


# -- request log -----------------------------------------------------------------------------------
def test_request_log_has_body_hash_status_and_never_headers(tmp_path):
    log = tmp_path / "requests.jsonl"
    secret = "sk-test-do-not-log-4242"
    with running_server(WordsBackend(), request_log=log) as url:
        body = {**CHAT, "temperature": 0.3, "stop": ["\n"], "n": 2}
        assert call(url, "/chat/completions", body, headers={"Authorization": f"Bearer {secret}"})[0] == 200
        assert call(url, "/chat/completions", {"model": "m"}, headers={"Authorization": f"Bearer {secret}"})[0] == 400
        call(url, "/health")
    text = log.read_text()
    assert secret not in text and "Authorization" not in text and "Bearer" not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e["endpoint"], e["status"], e["fault"]) for e in entries] == [
        ("/v1/chat/completions", 200, None),
        ("/v1/chat/completions", 400, None),
        ("/v1/health", 200, None),
    ]
    assert entries[0]["body"] == body
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert entries[0]["body_sha256"] == hashlib.sha256(canonical).hexdigest() == canonical_sha256(body)
    assert isinstance(entries[0]["time"], float)


# -- fault injection ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["429", "500", "malformed", "drop", "hang"])
def test_each_fault_kind_then_success(kind, tmp_path):
    backend = WordsBackend()
    log = tmp_path / "requests.jsonl"
    faults = f"rate=1,kinds={kind},max=1,retry_after=0.2,hang_s=0.6"
    with running_server(backend, faults=faults, request_log=log) as url:
        t0 = time.perf_counter()
        if kind in ("drop", "hang"):
            with pytest.raises(
                (http.client.RemoteDisconnected, ConnectionError, socket.timeout, urllib.error.URLError, TimeoutError)
            ):
                call(url, "/chat/completions", CHAT, timeout=0.25)
        else:
            status, headers, resp = call(url, "/chat/completions", CHAT)
            if kind == "429":
                assert (
                    status == 429 and headers["Retry-After"] == "0.2" and resp["error"]["type"] == "rate_limit_error"
                )
            elif kind == "500":
                assert status == 500 and resp["error"]["type"] == "server_error"
            else:
                assert status == 200 and isinstance(resp, bytes)  # not JSON
                with pytest.raises(json.JSONDecodeError):
                    json.loads(resp)
        if kind == "hang":
            assert time.perf_counter() - t0 < 0.6  # the client's timeout, not the hang, ended it
        assert backend.requests == []  # a faulty request costs no generation
        status, _, resp = call(url, "/chat/completions", CHAT)  # max=1: the next one succeeds
        assert status == 200 and resp["choices"][0]["message"]["content"] == "answer 0 to two plus two"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["fault"] for e in entries] == [kind, None]
    assert entries[0]["status"] == {"429": 429, "500": 500, "malformed": 200}.get(kind)


def test_fault_choice_is_seeded():
    def statuses(seed):
        with running_server(WordsBackend(), faults=f"rate=0.5,seed={seed},kinds=429,500,retry_after=0") as url:
            return [call(url, "/chat/completions", CHAT)[0] for _ in range(16)]

    first = statuses(3)
    assert first == statuses(3) and set(first) == {200, 429, 500}


def test_latency_overlaps_while_generation_is_serialised():
    backend = WordsBackend(gen_s=0.03)
    n, latency = 8, 0.3
    with running_server(backend, latency_ms=latency * 1000) as url:
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(call(url, "/chat/completions", CHAT)[0])) for _ in range(n)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        wall = time.perf_counter() - t0
    assert results == [200] * n
    assert backend.max_active == 1  # the lock: one generate() at a time
    assert wall < latency + n * 0.03 + 0.5 < n * (latency + 0.03)  # the latencies overlapped


def test_port_in_use_is_a_user_error(monkeypatch, capsys):
    with OpenAICompatServer(WordsBackend(), port=0) as srv:
        with pytest.raises(UserError, match="cannot listen"):
            OpenAICompatServer(WordsBackend(), port=srv.port, host="127.0.0.1").httpd  # noqa: B018
        # `cotbridge serve` says so before it loads the model (~10 s for SmolLM2), not after
        import cotbridge.backends.hf as hf
        from cotbridge.cli.app import main

        monkeypatch.setattr(hf, "HFBackend", lambda *a, **k: pytest.fail("the model was loaded first"))
        monkeypatch.setattr("sys.argv", ["cotbridge", "serve", "any-model", "--port", str(srv.port)])
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code == 2 and f"cannot listen on 127.0.0.1:{srv.port}" in capsys.readouterr().err


# -- a real model ------------------------------------------------------------------------------------
def test_tiny_model_served(tiny_backend):
    with running_server(tiny_backend) as url:
        status, _, resp = call(
            url, "/chat/completions", {**CHAT, "max_tokens": 4, "n": 2, "temperature": 1.0, "seed": 1}, timeout=60
        )
        assert status == 200 and len(resp["choices"]) == 2
        assert resp["usage"]["prompt_tokens"] > 0 and 0 < resp["usage"]["completion_tokens"] <= 8
        for c in resp["choices"]:
            assert c["finish_reason"] in ("stop", "length")
        status, _, resp = call(
            url, "/completions", {"model": "m", "prompt": "Q: Tom has 3 apples", "max_tokens": 3}, timeout=60
        )
        assert status == 200 and resp["choices"][0]["finish_reason"] in ("stop", "length")


def test_cli_serve_starts_answers_and_stops_on_ctrl_c(tiny_model_dir, tmp_path):
    log = tmp_path / "cli-requests.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "serve",
            str(tiny_model_dir),
            "--port",
            "0",
            "--request-log",
            str(log),
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a harness that runs the suite in the background ignores SIGINT, and children inherit that: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
        assert "serving" in line, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        url = line.split(" at ")[1].split()[0]
        assert call(url, "/models")[2]["data"][0]["id"] == str(tiny_model_dir)
        status, _, resp = call(url, "/completions", {"model": "gpt-4", "prompt": "Q:", "max_tokens": 2}, timeout=60)
        assert status == 404 and resp["error"]["code"] == "model_not_found"  # no stand-in for another model
        body = {"model": str(tiny_model_dir), "prompt": "Q:", "max_tokens": 2}
        status, _, resp = call(url, "/completions", body, timeout=60)
        assert status == 200 and resp["choices"][0]["finish_reason"] in ("stop", "length")
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # once in a full-suite run it did not stop within 20 s: show where it hangs
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"cotbridge serve did not stop within 60 s of SIGINT; its threads:\n{err[-6000:]}")
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    statuses = [json.loads(line)["status"] for line in log.read_text().splitlines()]
    assert statuses == [200, 404, 200]  # models list, the refused model name, the answered request


def test_cli_serve_rejects_a_bad_fault_spec_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", "serve", "some-model", "--faults", "rate=0.5,kinds=429,teapot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode == 2
        and done.stderr.strip().count("\n") == 0
        and "unknown fault kind(s) 'teapot'" in done.stderr
    )
