"""cotbridge teach through the OpenAI backend against a real local server: faults, and secrets hygiene."""

from __future__ import annotations

import json
import logging
import sqlite3

from cotbridge.backends.oracle import OracleBackend
from cotbridge.serve import running_server
from cotbridge.teach import TeachConfig, run_teach

TASK = "synthetic_arithmetic:k=2"


def teach_config(run_dir, url, **options):
    return TeachConfig(task=TASK, limit=60, mode="zero_shot_cot_single", run_dir=str(run_dir), chunk_size=20,
                       cache=str(run_dir / "cache.sqlite"),
                       teacher={"backend": "openai", "model": "oracle",
                                "options": {"base_url": url, "concurrency": 8, "timeout_s": 1.0, "max_retries": 8,
                                            "backoff_base_s": 0.01, "backoff_max_s": 0.05, **options}})


def test_thirty_percent_faults_still_give_every_record(tmp_path, caplog):
    log = tmp_path / "requests.log"
    faults = "rate=0.3,seed=1,kinds=429,500,hang,malformed,drop,retry_after=0.05,hang_s=1.5"
    with caplog.at_level(logging.WARNING), running_server(OracleBackend(task=TASK), faults=faults, request_log=log) as url:
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
    with caplog.at_level(logging.DEBUG), running_server(OracleBackend(task=TASK), request_log=log,
                                                       faults="rate=0.2,seed=3,kinds=429,500,retry_after=0.01") as url:
        run_teach(teach_config(run_dir, url, api_key_env="COTBRIDGE_TEST_KEY"), progress=False)
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"config.yaml", "synthetic_arithmetic.jsonl", "synthetic_arithmetic.summary.json", "cache.sqlite"}
    for path in [*written, log]:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text
    assert "COTBRIDGE_TEST_KEY" in (run_dir / "config.yaml").read_text()  # the variable's name is what is kept
