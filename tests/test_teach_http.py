"""cotbridge teach through the OpenAI backend against a real local server: faults, and secrets hygiene."""

from __future__ import annotations

import json
import logging
import sqlite3

from cotbridge.backends.oracle import OracleBackend
from cotbridge.server import running_server
from cotbridge.teach import TeachConfig, run_teach

TASK = "synthetic_arithmetic:k=2"


def teach_config(run_dir, url, **options):
    return TeachConfig(
        task=TASK,
        limit=60,
        mode="zero_shot_cot_single",
        run_dir=str(run_dir),
        chunk_size=20,
        cache=str(run_dir / "cache.sqlite"),
        teacher={
            "backend": "openai",
            "model": "oracle",
            "options": {
                "base_url": url,
                "concurrency": 8,
                "timeout_s": 1.0,
                "max_retries": 8,
                "backoff_base_s": 0.01,
                "backoff_max_s": 0.05,
                **options,
            },
        },
    )


def test_thirty_percent_faults_still_give_every_record(tmp_path, caplog):
    log = tmp_path / "requests.log"
    faults = "rate=0.3,seed=1,kinds=429,500,hang,malformed,drop,retry_after=0.05,hang_s=1.5"
    with (
        caplog.at_level(logging.WARNING),
        running_server(OracleBackend(task=TASK), faults=faults, request_log=log) as url,
    ):
        summary = run_teach(teach_config(tmp_path, url), progress=False)
    recs = [json.loads(x) for x in (tmp_path / "teacher" / "synthetic_arithmetic.jsonl").read_text().splitlines()]
    assert len(recs) == 60 and all(r["correct"] for r in recs) and summary["accuracy"] == 1.0
    served = [json.loads(x) for x in log.read_text().splitlines()]
    injected = {e["fault"] for e in served if e["fault"]}
    assert injected == {"429", "500", "hang", "malformed", "drop"}  # every kind of fault happened
    retries = [r for r in caplog.records if "retry" in r.getMessage().lower()]
    assert len(retries) >= sum(1 for e in served if e["fault"]) - 1  # every fault was retried, and said so
    # Nothing but good completions in the cache: one per record, none empty.
    with sqlite3.connect(tmp_path / "cache.sqlite") as c:
        cached = [json.loads(r[0]) for r in c.execute("SELECT record FROM completions")]
    assert len(cached) == 60 and all(x["text"].strip() and "Therefore" in x["text"] for x in cached)


def test_api_key_never_lands_in_anything_the_run_wrote(tmp_path, monkeypatch, caplog):
    secret = "sk-test-DO-NOT-LEAK-4242"
    monkeypatch.setenv("COTBRIDGE_TEST_KEY", secret)
    log = tmp_path / "server" / "requests.log"
    run_dir = tmp_path / "run"
    with (
        caplog.at_level(logging.DEBUG),
        running_server(
            OracleBackend(task=TASK), request_log=log, faults="rate=0.2,seed=3,kinds=429,500,retry_after=0.01"
        ) as url,
    ):
        run_teach(teach_config(run_dir, url, api_key_env="COTBRIDGE_TEST_KEY"), progress=False)
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {
        "synthetic_arithmetic.config.yaml",
        "synthetic_arithmetic.jsonl",
        "synthetic_arithmetic.summary.json",
        "cache.sqlite",
    }
    for path in [*written, log]:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text
    assert (
        "COTBRIDGE_TEST_KEY" in (run_dir / "teacher" / "synthetic_arithmetic.config.yaml").read_text()
    )  # the variable's name is what is kept


def test_max_cost_stops_cleanly_and_a_higher_cap_continues(tmp_path):
    with running_server(OracleBackend(task=TASK)) as url:
        cfg = teach_config(tmp_path, url)
        cfg.teacher.model = "gpt-4o-mini"  # priced: 0.15 / 0.60 USD per 1M tokens
        cfg.max_cost = 0.0022  # a chunk is estimated at <= 0.0017 USD (upper bound); it really costs ~0.0005
        first = run_teach(cfg, progress=False)
        assert first["stopped"] and 0 < first["records"] < 60 and first["cost_usd"] <= 0.0022
        cfg.max_cost = 1.0
        second = run_teach(cfg, progress=False)
    assert second["records"] == 60 and not second["stopped"] and second["cost_usd"] > first["cost_usd"]


def test_max_cost_also_caps_a_batch_api_export(tmp_path):
    with running_server(OracleBackend(task=TASK)) as url:
        cfg = teach_config(tmp_path, url)
        cfg.teacher.model = "gpt-4o-mini"  # priced: 0.15 / 0.60 USD per 1M tokens
        cfg.batch_export = str(tmp_path / "in.jsonl")
        everything = run_teach(cfg, progress=False)["batch_exported"]
        cfg.max_cost = 0.0006  # each call's worst case is ~0.0001 USD: only the first few fit
        capped = run_teach(cfg, progress=False)["batch_exported"]
    assert everything == 60 and 0 < capped < 60
    assert len((tmp_path / "in.jsonl").read_text().splitlines()) == capped


def test_batch_export_then_import_finishes_without_calls(tmp_path, monkeypatch):
    """Export the missing calls, answer them 'offline' (as the Batch API would, out of order), import, finish."""
    import random

    oracle = OracleBackend(task=TASK)
    with running_server(oracle, request_log=tmp_path / "served.log") as url:
        cfg = teach_config(tmp_path, url)
        cfg.limit, cfg.mode, cfg.samples, cfg.temperature = 12, "zero_shot_cot", 2, 0.7  # two-stage: two rounds
        for round_ in range(2):
            cfg.batch_export, cfg.batch_import = str(tmp_path / f"in{round_}.jsonl"), None
            n = run_teach(cfg, progress=False)["batch_exported"]
            assert n == 24
            lines = [json.loads(x) for x in (tmp_path / f"in{round_}.jsonl").read_text().splitlines()]
            from cotbridge.backends.base import Request

            outputs = []
            for line in lines:
                body = line["body"]
                req = Request(messages=body["messages"])
                text = oracle.answer(req)
                content = f" {text}." if round_ else f" Working it out ({line['custom_id'][:8]}) gives {text}."
                outputs.append(
                    {
                        "custom_id": line["custom_id"],
                        "response": {
                            "status_code": 200,
                            "body": {
                                "choices": [
                                    {
                                        "index": 0,
                                        "message": {"role": "assistant", "content": content},
                                        "finish_reason": "stop",
                                    }
                                ],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                            },
                        },
                    }
                )
            random.Random(round_).shuffle(outputs)
            (tmp_path / f"out{round_}.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs))
            cfg.batch_export, cfg.batch_import = None, str(tmp_path / f"out{round_}.jsonl")
            if round_ == 0:
                assert Teacher_pending(cfg) == 24  # rationales imported; the answers are the next round
        summary = run_teach(cfg, progress=False)
    assert summary["records"] == 24 and summary["accuracy"] == 1.0
    assert not (tmp_path / "served.log").exists() or (tmp_path / "served.log").read_text() == ""  # nothing was called


def Teacher_pending(cfg):
    from cotbridge.teach import Teacher

    t = Teacher(cfg, progress=False)
    t.import_batch(cfg.batch_import)
    return len(t.pending_requests())
