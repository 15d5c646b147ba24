"""Run directories that refuse to be mixed: teach with other settings refuses (``--force-new`` keeps the old records
aside), a second writer is refused naming the holder, two teach processes started together leave one run of
records. The helpers and the fault matrix are in test_faults.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import test_faults
from tests.test_faults import HOLD_LOCK, ORACLE_K5, assert_one_line_error, cli, snapshot, teach_reference

taught = test_faults.taught  # the fixture: a run directory of 8 reference-teacher records


def test_teach_with_other_settings_refuses_and_force_new_keeps_the_old_records(taught, tmp_path):
    before = snapshot(taught)
    env = {"COTBRIDGE_CACHE": str(tmp_path / "cache.sqlite")}
    done = cli(*ORACLE_K5, "--run-dir", taught, env=env)
    last = assert_one_line_error(
        done, "made with other settings", "teacher.backend: 'reference' -> 'oracle'", "--force-new"
    )
    assert "synthetic_arithmetic:k=5" in last
    assert snapshot(taught) == before  # nothing was appended, nothing rewritten

    again = cli(*ORACLE_K5, "--run-dir", taught, "--force-new", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    kept = list((taught / "teacher").glob("synthetic_arithmetic.replaced-*.jsonl"))
    assert len(kept) == 1 and kept[0].read_bytes() == before["teacher/synthetic_arithmetic.jsonl"]
    fresh = [json.loads(x) for x in (taught / "teacher" / "synthetic_arithmetic.jsonl").read_text().splitlines()]
    assert len(fresh) == 8 and all(r["teacher"]["backend"] == "oracle" for r in fresh)


def test_a_second_writer_is_refused_naming_the_holder(taught, tmp_path):
    before = snapshot(taught)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(taught)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = teach_reference(taught, tmp_path)
        assert_one_line_error(done, f"in use by PID {holder.pid}", "--run-dir")
        assert snapshot(taught) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock went with it, and the same command now runs (and finds nothing to do)
    done = teach_reference(taught, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert snapshot(taught)["teacher/synthetic_arithmetic.jsonl"] == before["teacher/synthetic_arithmetic.jsonl"]


def test_two_teach_processes_started_together_leave_one_run_of_records(tmp_path):
    env = {**os.environ, "COTBRIDGE_CACHE": str(tmp_path / "cache.sqlite")}
    args = [
        sys.executable,
        "-m",
        "cotbridge",
        "teach",
        "--task",
        "synthetic_arithmetic",
        "--teacher",
        "reference",
        "-D",
        "4",
        "--limit",
        "200",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    records = (tmp_path / "run" / "teacher" / "synthetic_arithmetic.jsonl").read_text().splitlines()
    keys = [json.loads(x)["key"] for x in records]
    assert len(keys) == len(set(keys)) == 800  # one complete run, no duplicate
    if codes == [0, 2]:  # the usual case: they overlapped, and the second was refused
        refused = next(err for code, err in results if code == 2)
        assert "in use by PID" in refused.strip().splitlines()[-1]
    else:  # the first finished before the second started: the second found nothing to do
        assert codes == [0, 0]
