"""OpenAIBackend's Batch API files (export, import in any order, errors naming file and line) and its pricing
(cost math, price tables from files); the round trips, retries and key hygiene are in test_openai_backend.py."""

from __future__ import annotations

import json
import random

import pytest

from cotbridge.backends import pricing
from cotbridge.backends.base import Request
from cotbridge.errors import DataError, UserError
from cotbridge.server import running_server
from tests.test_openai_backend import api_key, chat, client  # noqa: F401  (api_key: the autouse fixture)
from tests.test_serve import WordsBackend


# -- Batch API -----------------------------------------------------------------------------------------
def test_batch_export_import_round_trip_in_any_order(tmp_path):
    reqs = [chat(f"question {i}", n=2 if i == 1 else 1, stop=["<1>", "<2>", "<3>", "<4>", "to"]) for i in range(4)]
    ids = [f"ex-{i}" for i in range(4)]
    with running_server(WordsBackend()) as url:
        be = client(url)
        path = be.export_batch_jsonl(reqs, tmp_path / "batch_in.jsonl", ids)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [ln["custom_id"] for ln in lines] == ids
        assert all(ln["method"] == "POST" and ln["url"] == "/v1/chat/completions" for ln in lines)
        assert lines[1]["body"] == be.request_body(reqs[1]) and lines[1]["body"]["n"] == 2
        # play the Batch API: run each body, write the output format, shuffled
        import urllib.request

        outputs = []
        for ln in lines:
            req = urllib.request.Request(
                url + "/chat/completions",
                data=json.dumps(ln["body"]).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                body = json.loads(resp.read())
            outputs.append(
                {
                    "id": f"batch_req_{ln['custom_id']}",
                    "custom_id": ln["custom_id"],
                    "response": {"status_code": 200, "request_id": "r", "body": body},
                    "error": None,
                }
            )
    random.Random(0).shuffle(outputs)
    out_path = tmp_path / "batch_out.jsonl"
    out_path.write_text("".join(json.dumps(o) + "\n" for o in outputs))
    results = be.import_batch_results(out_path, dict(zip(ids, reqs)))
    assert set(results) == set(ids)
    assert [c.text for c in results["ex-1"]] == ["answer 0 ", "answer 1 "]  # the 5th stop string applied locally
    assert results["ex-3"][0].finish_reason == "stop" and results["ex-3"][0].completion_tokens == 5
    assert results["ex-0"][0].extra["cost_usd"] == pytest.approx(0.5 * pricing.cost("gpt-4o-mini", 2, 5))


def test_batch_export_rejects_duplicate_ids(tmp_path):
    be = client("http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="distinct"):
        be.export_batch_jsonl([chat("a"), chat("b")], tmp_path / "in.jsonl", ["x", "x"])


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "not valid JSON"),
        ('{"response": {}}', "needs a custom_id"),
        (
            '{"custom_id": "a", "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}}, '
            '"error": null}',
            "custom_id 'a' failed (status 429): slow down",
        ),
        ('{"custom_id": "a", "response": null, "error": {"code": "x", "message": "expired"}}', "custom_id 'a' failed"),
        (
            '{"custom_id": "a", "response": {"status_code": 200, "body": {"nochoices": 1}}, "error": null}',
            "no list of choices",
        ),
    ],
)
def test_batch_import_errors_name_file_and_line(tmp_path, line, message):
    good = {
        "custom_id": "ok",
        "response": {
            "status_code": 200,
            "body": {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]
            },
        },
        "error": None,
    }
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    be = client("http://127.0.0.1:9/v1")
    with pytest.raises(DataError) as e:
        be.import_batch_results(path)
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)


def test_batch_import_can_skip_failed_requests(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    path.write_text(
        json.dumps({"custom_id": "a", "response": {"status_code": 500, "body": {}}, "error": None})
        + "\n"
        + json.dumps(
            {
                "custom_id": "b",
                "response": {
                    "status_code": 200,
                    "body": {
                        "choices": [{"index": 0, "text": "t", "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                    },
                },
            }
        )
        + "\n"
    )
    results = client("http://127.0.0.1:9/v1").import_batch_results(path, strict=False)
    assert list(results) == ["b"] and results["b"][0].finish_reason == "length" and results["b"][0].prompt_tokens == 3
    assert "custom_id 'a' failed (status 500)" in caplog.text


# -- pricing ------------------------------------------------------------------------------------------
def test_pricing_cost_math_and_unknown_models():
    assert pricing.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert pricing.cost("gpt-4o-mini", 1000, 2000) == pytest.approx((1000 * 0.15 + 2000 * 0.60) / 1e6)
    assert pricing.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert pricing.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)  # dated names: longest prefix
    assert pricing.cost("gpt-4o-2024-08-06", 0, 1_000_000) == pytest.approx(10.0)
    assert pricing.cost("openai/gpt-4.1-mini", 1_000_000, 1_000_000) == pytest.approx(2.0)
    assert pricing.cost("gpt-3.5-turbo-0125", 1_000_000, 0) == pytest.approx(0.5)
    assert pricing.cost("smollm2-135m", 10, 10) is None and pricing.cost("gpt-4o-minimal", 1, 1) is None
    assert pricing.cost("gpt-4o-audio-preview", 1, 1) is None
    est = pricing.estimate_cost("gpt-3.5-turbo", [Request(prompt="x" * 400, n=2, max_tokens=100)])
    assert est["prompt_tokens"] == 100 and est["completion_tokens_max"] == 200
    assert est["cost_usd_max"] == pytest.approx((100 * 0.5 + 200 * 1.5) / 1e6)
    assert pricing.estimate_cost("gpt-4o", prompt_tokens=1_000_000)["cost_usd_max"] == pytest.approx(2.5)
    assert pricing.estimate_cost("local", prompt_tokens=5)["cost_usd_max"] is None


def test_price_table_files_override_defaults(tmp_path):
    y = tmp_path / "prices.yaml"
    y.write_text("gpt-4o-mini: {input: 1.0, output: 2.0}\nmy-model:\n  input: 0\n  output: 0.5\n")
    table = pricing.load_price_table(y)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, table) == pytest.approx(3.0)
    assert pricing.cost("my-model", 0, 2_000_000, table) == pytest.approx(1.0)
    assert pricing.cost("gpt-4o", 1_000_000, 0, table) == pytest.approx(2.5)  # defaults kept
    j = tmp_path / "prices.json"
    j.write_text(json.dumps({"m": {"input": 1, "output": 1}}))
    assert pricing.load_price_table(j, merge_defaults=False) == {"m": {"input": 1.0, "output": 1.0}}
    with running_server(WordsBackend()) as url:
        be = client(url, model="my-model", prices=str(y))
        be.generate([chat("q")], progress=False)
    assert be.usage.cost_usd == pytest.approx(4 * 0.5 / 1e6)


@pytest.mark.parametrize(
    "text,message",
    [
        ("gpt-4o: {input: 1.0}\n", "model 'gpt-4o': missing key(s) ['output']"),
        ("gpt-4o: {input: 1.0, output: -2}\n", "model 'gpt-4o': output must be a non-negative number"),
        ("gpt-4o: {input: 1, output: 2, cached: 0.5}\n", "unknown key(s) ['cached']"),
        ("gpt-4o: 3\n", "model 'gpt-4o': expected {input: x, output: y}"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
        ("gpt-4o: {input: 1, output: 2}\ngpt-4o: {input: 9, output: 9}\n", "duplicate key 'gpt-4o'"),  # last won
    ],
)
def test_price_table_errors_name_file_and_key(tmp_path, text, message):
    p = tmp_path / "prices.yaml"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        pricing.load_price_table(p)
    assert str(e.value).startswith(str(p)) and message in str(e.value)


def test_batch_commands_say_what_is_wrong(tmp_path):
    """The reference teacher (never cached) was told that "the cache must not be off"; a missing file to import was
    not named."""
    import os
    import subprocess
    import sys

    def teach(*args):
        command = [sys.executable, "-m", "cotbridge", "teach", "--limit", "2", *args]
        env = {**os.environ, "OPENAI_API_KEY": "sk-fake"}
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    done = teach("--run-dir", "a", "--batch-export", "x.jsonl")
    assert done.returncode == 2 and "the reference backend has no Batch API" in done.stderr, done.stderr
    openai = "--teacher openai --teacher-model gpt-4o-mini --set teacher.options.base_url=http://127.0.0.1:9/v1"
    done = teach("--run-dir", "b", *openai.split(), "--batch-import", "nope.jsonl")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: nope.jsonl: no such file (the Batch API's output file to import)"
