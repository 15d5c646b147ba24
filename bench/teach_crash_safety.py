"""Crash safety of `cotbridge teach`: a 300-request run against `cotbridge serve`, killed with SIGKILL at 5
random points and resumed each time, must end with records identical to an uninterrupted run, and the
server must never see again a request whose record was already written. Then two faults of the request cache:
its disk fills up (a 192 KiB tmpfs; needs root to mount, else skipped) and another process holds its write lock;
each run must stop with one line naming the cache, and the resume must send no request a second time.

Run: .venv/bin/python bench/teach_crash_safety.py   (writes bench/results/teach_crash_safety.{json,md})
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _paths import ROOT
from cotbridge.backends.oracle import QUESTION_RE, OracleBackend
from cotbridge.backends.replay import normalize_question
from cotbridge.server import running_server

TASK, N = "synthetic_arithmetic:k=2", 300
KILLS, SEED = 5, 0


def teach_cmd(url: str, run_dir: Path, cache: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cotbridge",
        "teach",
        "--task",
        TASK,
        "--limit",
        str(N),
        "--mode",
        "zero_shot_cot_single",
        "--teacher",
        "openai",
        "--teacher-model",
        "oracle",
        "--run-dir",
        str(run_dir),
        "--set",
        f"teacher.options.base_url={url}",
        "--set",
        "teacher.options.concurrency=8",
        "--set",
        "chunk_size=16",
        "--set",
        f"cache={cache or run_dir / 'cache.sqlite'}",
    ]


def count_records(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def comparable(path: Path) -> list[dict]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k != "created"} for r in recs), key=lambda r: r["key"])


def logged_questions(log: Path) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        body = json.loads(line)["body"] or {}
        text = (body.get("messages") or [{}])[0].get("content", "") if "messages" in body else body.get("prompt", "")
        found = QUESTION_RE.findall(text)
        out.append(normalize_question(found[-1]) if found else "")
    return out


def _cache_size(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM completions").fetchone()[0]


def _stop_and_resume(url: str, log: Path, run_dir: Path, cache: Path, env: dict, fault, clear) -> dict:
    """Start teach, apply ``fault`` once 100 records are written, let it stop, ``clear`` it, resume; count requests."""
    records = run_dir / "teacher" / "synthetic_arithmetic.jsonl"
    proc = subprocess.Popen(
        teach_cmd(url, run_dir, cache), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    while count_records(records) < 100 and proc.poll() is None:
        time.sleep(0.005)
    fault()
    code, stderr = proc.wait(), proc.stderr.read().strip().splitlines()
    stopped_at, sent_before_resume = count_records(records), len(logged_questions(log))
    clear()
    resumed = subprocess.run(teach_cmd(url, run_dir, cache), env=env, capture_output=True, text=True)
    asked = logged_questions(log)
    return {
        "exit_code": code,
        "message": (stderr[-1:] or [""])[0].replace(str(cache), "<cache>").replace(tempfile.gettempdir(), "<tmp>"),
        "records_when_stopped": stopped_at,
        "requests_before_resume": sent_before_resume,
        "resume_exit_code": resumed.returncode,
        "records": count_records(records),
        "server_requests": len(asked),
        "requests_sent_twice": len(asked) - len(set(asked)),
    }


def cache_faults(tmp: Path, oracle: OracleBackend, env: dict) -> dict:
    import sqlite3

    out = {}
    # Another process takes the cache's write lock for longer than the busy timeout (10 s).
    lock_dir, held = tmp / "locked", []
    with running_server(oracle, latency_ms=20, request_log=tmp / "locked.log") as url:

        def take_lock() -> None:
            conn = sqlite3.connect(lock_dir / "cache.sqlite", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            held.append(conn)

        out["locked"] = _stop_and_resume(
            url, tmp / "locked.log", lock_dir, lock_dir / "cache.sqlite", env, take_lock, lambda: held[0].close()
        )
    # The cache's disk fills up: a small tmpfs, grown again before the resume ("free space").
    mnt = tmp / "small_disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True).returncode:
        out["disk_full"] = "skipped: mounting a tmpfs needs root"
        return out
    try:
        with running_server(oracle, latency_ms=20, request_log=tmp / "full.log") as url:
            out["disk_full"] = _stop_and_resume(
                url,
                tmp / "full.log",
                tmp / "full",
                mnt / "cache.sqlite",
                env,
                lambda: None,
                lambda: subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True),
            )
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    return out


def main() -> None:
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        oracle = OracleBackend(task=TASK, split="train")
        # 1. the uninterrupted reference run
        with running_server(oracle, latency_ms=20, request_log=tmp / "ref.log") as url:
            t0 = time.perf_counter()
            subprocess.run(teach_cmd(url, tmp / "ref"), check=True, env=env, capture_output=True)
            ref_s = time.perf_counter() - t0
        reference = comparable(tmp / "ref" / "teacher" / "synthetic_arithmetic.jsonl")
        # 2. the same run killed at 5 random points (after a random number of written records), resumed each time
        records = tmp / "crash" / "teacher" / "synthetic_arithmetic.jsonl"
        targets = sorted(rng.sample(range(10, N - 10), KILLS))
        log = tmp / "crash.log"
        kills, violations = [], 0
        cached = lambda: _cache_size(tmp / "crash" / "cache.sqlite")  # noqa: E731
        with running_server(oracle, latency_ms=20, request_log=log) as url:
            for target in targets:
                written_before = (
                    {json.loads(x)["question"] for x in records.read_text().splitlines()}
                    if records.exists()
                    else set()
                )
                log_start = len(log.read_text().splitlines()) if log.exists() else 0
                proc = subprocess.Popen(
                    teach_cmd(url, tmp / "crash"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                while count_records(records) < target and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.15))  # land inside the next chunk, with requests in flight
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                asked = logged_questions(log)[log_start:]
                violations += sum(
                    normalize_question(q) in {normalize_question(w) for w in written_before} for q in asked
                )
                kills.append(
                    {
                        "target_records": target,
                        "records_after_kill": count_records(records),
                        "cached_after_kill": cached(),
                    }
                )
            written_before = {json.loads(x)["question"] for x in records.read_text().splitlines()}
            log_start = len(log.read_text().splitlines())
            subprocess.run(teach_cmd(url, tmp / "crash"), check=True, env=env, capture_output=True)
            asked = logged_questions(log)[log_start:]
            violations += sum(q in {normalize_question(w) for w in written_before} for q in asked)
        final = comparable(records)
        all_asked = logged_questions(log)
        # 3. two teach processes started together on one fresh run directory: one must refuse (the run directory
        #    is locked), and the records must be those of a single run, every request paid once
        both_log = tmp / "both.log"
        with running_server(oracle, latency_ms=20, request_log=both_log) as url:
            procs = [
                subprocess.Popen(
                    teach_cmd(url, tmp / "both"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
                for _ in range(2)
            ]
            outcomes = [(p.wait(), p.stderr.read().strip().splitlines()[-1:]) for p in procs]
        both = comparable(tmp / "both" / "teacher" / "synthetic_arithmetic.jsonl")
        both_asked = logged_questions(both_log)
        concurrent = {
            "exit_codes": sorted(code for code, _ in outcomes),
            # the temporary run directory's path would tie the committed figures to this machine
            "refusal": next(
                (line[0].replace(str(tmp / "both"), "<run_dir>") for code, line in outcomes if code == 2 and line),
                None,
            ),
            "identical_to_single_run": both == reference,
            "records": len(both),
            "server_requests": len(both_asked),
        }
        faults = cache_faults(tmp, oracle, env)
        result = {
            "cache_faults": faults,
            "requests": N,
            "kills": kills,
            "reference_wall_s": round(ref_s, 2),
            "identical_to_uninterrupted": final == reference,
            "records": len(final),
            "server_requests_total": len(all_asked),
            "repeated_requests": len(all_asked) - len(set(all_asked)),
            "repeats_of_already_written_records": violations,
            "concurrent": concurrent,
        }
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "teach_crash_safety.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "teach_crash_safety.md").write_text(
        "# teach crash safety (SIGKILL x5, resume)\n\n"
        f"- {N} requests (synthetic_arithmetic, one-stage zero-shot-CoT, "
        "OpenAI backend → `cotbridge serve` with 20 ms latency)\n"
        f"- killed with {', '.join(str(k['records_after_kill']) for k in kills)} records written "
        f"({', '.join(str(k['cached_after_kill']) for k in kills)} responses already in the request cache)\n"
        f"- final records identical to the uninterrupted run: **{result['identical_to_uninterrupted']}** "
        f"({len(final)} records)\n"
        f"- server saw {len(all_asked)} requests; repeated request bodies: {result['repeated_requests']}; "
        f"repeats of records already written: **{violations}**\n"
        f"- two `teach` processes started together on one run directory: exit codes {concurrent['exit_codes']}; "
        f"the refused one said `{concurrent['refusal']}`; records identical to a single run: "
        f"**{concurrent['identical_to_single_run']}** ({concurrent['records']} records, "
        f"{concurrent['server_requests']} requests to the server for {N} questions)\n"
        + "".join(_fault_line(name, f) for name, f in faults.items())
    )


def _fault_line(name: str, f: dict | str) -> str:
    what = {"locked": "cache locked by another process", "disk_full": "cache's disk full (192 KiB tmpfs)"}[name]
    if isinstance(f, str):
        return f"- {what}: {f}\n"
    return (
        f"- {what}: teach exited {f['exit_code']} with {f['records_when_stopped']} records written and "
        f"{f['requests_before_resume']} requests sent, saying `{f['message']}`; the resume exited "
        f"{f['resume_exit_code']} with {f['records']} records after {f['server_requests']} requests in all: "
        f"requests sent twice **{f['requests_sent_twice']}**\n"
    )


if __name__ == "__main__":
    main()
