"""`cotbridge serve` under hostile conditions: a request log that cannot be written, and bodies that are too deep,
too large, not JSON or of the wrong types — each answered (a 4xx naming the field), and the next request served."""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import types

import openai
import pytest

import cotbridge.request_log as request_log_mod
from cotbridge.errors import UserError
from cotbridge.server import OpenAICompatServer
from tests.test_serve import CHAT, WordsBackend, call

ANSWER = "answer 0 to two plus two"


def post(conn: http.client.HTTPConnection, raw: bytes, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def warnings_from_server(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cotbridge.server" and r.levelno >= logging.WARNING]


# -- a request log that cannot be written -----------------------------------------------------------------------
class FillingDisk:
    """Stands in for the server module's ``os``: while ``full``, a write takes ``room`` bytes, then raises ENOSPC."""

    def __init__(self, room: int = 7):
        self.full, self.room, self.refusals = False, room, 0

    def module(self) -> types.SimpleNamespace:
        def write(fd: int, data) -> int:
            if not self.full:
                return os.write(fd, data)
            if self.room:
                n, self.room = os.write(fd, bytes(data[: self.room])), 0
                return n
            self.refusals += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return types.SimpleNamespace(**{**vars(os), "write": write})


def test_full_log_disk_keeps_answering_with_one_warning_and_counts_the_dropped_lines(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="cotbridge.server")
    log = tmp_path / "requests.jsonl"
    disk = FillingDisk()
    monkeypatch.setattr(request_log_mod, "os", disk.module())
    srv = OpenAICompatServer(WordsBackend(), port=0, any_model=True, request_log=log)
    with srv:
        assert call(srv.url, "/chat/completions", CHAT)[0] == 200
        disk.full = True
        for _ in range(5):  # the disk fills up: every request is still answered
            status, _, resp = call(srv.url, "/chat/completions", CHAT)
            assert status == 200 and resp["choices"][0]["message"]["content"] == ANSWER
        assert call(srv.url, "/health")[0] == 200
        assert disk.refusals == 1  # within retry_s the log is not tried again
        (warning,) = warnings_from_server(caplog)  # one line, not one per request
        assert str(log) in warning and "No space left on device" in warning and "free disk space" in warning
        disk.full = False  # space is freed; the next request after retry_s is logged again
        srv.request_log.retry_s = 0
        assert call(srv.url, "/chat/completions", {**CHAT, "max_tokens": 7})[0] == 200
        assert "written again; 6 line(s) were dropped" in warnings_from_server(caplog)[1]
    assert "6 line(s) could not be written" in warnings_from_server(caplog)[-1]  # said again at shutdown
    # the partial write was taken back: the log holds whole entries only, the first and the one after recovery
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["status"], e["body"]["max_tokens"]) for e in entries] == [(200, 50), (200, 7)]


def test_removed_log_folder_keeps_answering_and_logs_again_once_it_is_back(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cotbridge.server")
    folder = tmp_path / "logs"
    log = folder / "requests.jsonl"
    srv = OpenAICompatServer(WordsBackend(), port=0, any_model=True, request_log=log)
    with srv:
        assert call(srv.url, "/chat/completions", CHAT)[0] == 200
        shutil.rmtree(folder)  # the open file now has no name: writing on would lose every line without an error
        srv.request_log.retry_s = 0  # retry on every request: still one warning
        for _ in range(3):
            assert call(srv.url, "/chat/completions", CHAT)[2]["choices"][0]["message"]["content"] == ANSWER
        (warning,) = warnings_from_server(caplog)
        assert str(log) in warning and "No such file or directory" in warning
        folder.mkdir()
        assert call(srv.url, "/chat/completions", CHAT)[0] == 200
    assert [json.loads(line)["status"] for line in log.read_text().splitlines()] == [200]


def test_a_request_log_that_cannot_be_opened_at_start_is_one_user_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="cannot open the request log .*a-file/requests.jsonl"):
        OpenAICompatServer(WordsBackend(), port=0, request_log=tmp_path / "a-file" / "requests.jsonl")


# -- hostile and malformed bodies ---------------------------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MSG = [{"role": "user", "content": "x"}]
HOSTILE = {  # id: (raw body, the field the error names, a fragment of its message)
    "100k-deep": (f'{{"model": "m", "messages": {nested(100_000)}}}', None, "nested too deeply"),
    "65-levels-in-messages": (json.dumps({**CHAT, "messages": [*MSG, json.loads(nested(63))]}), "messages", "deeply"),
    "65-levels-unknown-field": (json.dumps({**CHAT, "metadata": json.loads(nested(64))}), "metadata", "64 levels"),
    "5000-digit-int": ('{"model": "m", "messages": [], "n": ' + "9" * 5000 + "}", None, "not valid JSON"),
    "not-json": ("{not json", None, "not valid JSON"),
    "not-utf8": (b'{"model": "m", "messages": "\xff\xfe"}', None, "not valid JSON"),
    "empty": ("", None, "must be a JSON object"),
    "a-list": ("[1, 2]", None, "must be a JSON object"),
    "a-string": ('"just a string"', None, "must be a JSON object"),
    "lone-surrogate": (
        json.dumps({**CHAT, "messages": [{"role": "user", "content": "\ud800"}]}),
        "messages",
        "surrogate",
    ),
    "messages-a-string": (json.dumps({**CHAT, "messages": "hi"}), "messages", "messages must be a non-empty list"),
    "message-without-role": (json.dumps({**CHAT, "messages": [{"content": "x"}]}), "messages", "with a role"),
    "max_tokens-negative": (json.dumps({**CHAT, "max_tokens": -1}), "max_tokens", "max_tokens must be an integer"),
    "max_tokens-a-string": (json.dumps({**CHAT, "max_tokens": "50"}), "max_tokens", "max_tokens must be an integer"),
    "max_tokens-a-float": (json.dumps({**CHAT, "max_tokens": 1.5}), "max_tokens", "max_tokens must be an integer"),
    "temperature-too-high": (json.dumps({**CHAT, "temperature": 2.5}), "temperature", "temperature must be a number"),
    "temperature-a-string": (json.dumps({**CHAT, "temperature": "hot"}), "temperature", "must be a number"),
    "temperature-NaN": (
        '{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        "temperature",
        "got nan",
    ),
    "n-zero": (json.dumps({**CHAT, "n": 0}), "n", "n must be an integer in [1, 128]"),
    "model-a-list": (json.dumps({**CHAT, "model": ["m"]}), "model", "model must be a string"),
    "stream-a-string": (json.dumps({**CHAT, "stream": "no"}), "stream", "stream must be true or false"),
    "continue-a-string": (json.dumps({**CHAT, "continue_final_message": "no"}), "continue_final_message", "true or"),
}


@pytest.mark.parametrize("raw,param,fragment", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_body_gets_a_400_naming_the_field_and_the_connection_serves_on(raw, param, fragment):
    backend = WordsBackend()
    srv = OpenAICompatServer(backend, port=0, any_model=True)
    with srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        status, resp = post(conn, raw.encode() if isinstance(raw, str) else raw)
        assert status == 400 and fragment in resp["error"]["message"]
        assert resp["error"]["type"] == "invalid_request_error" and resp["error"]["param"] == param
        assert set(resp["error"]) == {"message", "type", "param", "code"}
        assert backend.requests == []
        status, resp = post(conn, json.dumps(CHAT).encode())  # the same connection: it was not dropped
        assert status == 200 and resp["choices"][0]["message"]["content"] == ANSWER


def test_deep_body_is_logged_as_text_and_64_levels_are_answered(tmp_path):
    log = tmp_path / "requests.jsonl"
    with OpenAICompatServer(WordsBackend(), port=0, any_model=True, request_log=log) as srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        assert post(conn, f'{{"messages": {nested(100_000)}}}'.encode())[0] == 400
        deep_label = json.loads('{"a": ' * 63 + "1" + "}" * 63)  # metadata is a label: any object is taken
        assert post(conn, json.dumps({**CHAT, "metadata": deep_label}).encode())[0] == 200  # 64 levels
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["status"] for e in entries] == [400, 200] and entries[0]["body"].startswith('{"messages": [[[')


def test_too_large_body_is_refused_unread_with_a_413_and_the_server_serves_on():
    with OpenAICompatServer(WordsBackend(), port=0, any_model=True, max_body_bytes=1000) as srv:
        # Megabytes sent past the limit: the 413 still reaches the client. Closing on the unread data would reset
        # the connection, and the client would see a broken pipe instead (about half the time: five tries).
        for _ in range(5):
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
            status, resp = post(conn, json.dumps({**CHAT, "pad": "x" * 3_000_000}).encode())
            assert status == 413 and "larger than this server's limit of 1000" in resp["error"]["message"]
            assert resp["error"]["type"] == "invalid_request_error"
            conn.close()
        # A Content-Length of a terabyte and no body: refused from the header alone, at once.
        sock_conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        sock_conn.putrequest("POST", "/v1/chat/completions")
        sock_conn.putheader("Content-Length", str(10**12))
        sock_conn.endheaders()
        assert sock_conn.getresponse().status == 413
        assert call(srv.url, "/chat/completions", CHAT)[0] == 200


def test_real_openai_client_is_answered_after_hostile_requests(tmp_path):
    with OpenAICompatServer(WordsBackend(), port=0, model_name="words", request_log=tmp_path / "r.jsonl") as srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        for raw in (f'{{"messages": {nested(100_000)}}}', "{not json", '{"messages": 3}'):
            assert post(conn, raw.encode())[0] == 400
        client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0, timeout=10)
        with pytest.raises(openai.BadRequestError) as e:  # the SDK reads the error as OpenAI's
            client.chat.completions.create(model="words", messages=[{"role": "user", "content": "hi"}], n=0)
        assert e.value.param == "n" and e.value.type == "invalid_request_error"
        done = client.chat.completions.create(
            model="words", messages=[{"role": "user", "content": "two plus two"}], max_tokens=50
        )
    assert done.choices[0].message.content == ANSWER and done.model == "words"


def test_cli_serve_rejects_a_bad_max_body_size_before_loading_the_model():
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", "serve", "some-model", "--max-body-mb", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--max-body-mb 0.0: must be greater than 0 and less than 1048576" in done.stderr
