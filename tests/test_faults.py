"""The fault matrix: each CLI command against each class of fault ends in one line on stderr naming what to fix,
exit status 2, no traceback, and leaves what earlier runs wrote untouched. Also: limits, empty curation, untrainable
data, foreign checkpoints (run directories that refuse to be mixed: test_run_directory_guards.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cotbridge.server import OpenAICompatServer

ORACLE_K5 = ["teach", "--task", "synthetic_arithmetic:k=5", "--teacher", "oracle", "-D", "2", "--limit", "4"]
REFERENCE = ["--task", "synthetic_arithmetic", "--teacher", "reference", "-D", "2", "--limit", "4"]


def cli(*args, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cotbridge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def assert_one_line_error(done, *needles):
    """Exit 2; stderr's last line is the error (earlier lines are ordinary log output), and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), done.stderr[-2000:]
    for needle in needles:
        assert needle in last, (needle, last)
    return last


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# Holds a run directory's lock for a minute, printing "locked" once it has it (a second writer's test)
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from cotbridge.folder_lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def teach_reference(run_dir: Path, tmp_path: Path):
    """`teach` with the reference teacher into run_dir: 8 records (4 questions x D=2, every answer wrong)."""
    env = {"COTBRIDGE_CACHE": str(tmp_path / "cache.sqlite")}
    return cli("teach", *REFERENCE, "--run-dir", run_dir, "--set", "teacher.options.error_rate=1.0", env=env)


@pytest.fixture
def taught(tmp_path):
    """A run directory with 8 reference-teacher records (4 questions x D=2, every answer wrong)."""
    run_dir = tmp_path / "run"
    done = teach_reference(run_dir, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


# ---------------------------------------------------------------- the fault matrix


def bad_utf8(path: Path) -> Path:
    path.write_bytes(b'{"output": "caf\xe9", "target": "1"}\n')
    return path


def no_task_records(path: Path) -> Path:
    path.write_text('{"key": "0#0", "example_id": "0", "sample": 0, "rationale": "x", "correct": true}\n')
    return path


def small_window_eval(path: Path) -> list:
    """A tiny model with a window of 64 positions and one GSM8K question far longer than that."""
    from tests.test_context_window import save_small_window_model

    (path / "data" / "gsm8k").mkdir(parents=True)
    (path / "data" / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "apples " * 80, "answer": "#### 1"}))
    model = save_small_window_model(path / "model")
    return ["--model", model, "--task", "gsm8k", "--data-dir", path / "data"]


@pytest.mark.parametrize(
    "command,fault,needles",
    [
        # bad input
        ("teach", lambda d: ["--limit", "0"], ["limit", "greater than or equal to 1"]),
        ("teach", lambda d: ["--limit", "-3"], ["limit", "greater than or equal to 1"]),
        ("teach", lambda d: ["--set", "teacher.options.error_rat=0.2"], ["error_rat", "did you mean 'error_rate'"]),
        ("eval", lambda d: ["--limit", "0", "--model", "x"], ["limit", "greater than or equal to 1"]),
        ("eval-predictions", lambda d: [bad_utf8(d / "p.jsonl")], ["p.jsonl:1", "not UTF-8"]),
        ("curate", lambda d: [bad_utf8(d / "r.jsonl")], ["r.jsonl:1", "not UTF-8"]),
        ("curate", lambda d: [no_task_records(d / "r.jsonl")], ["r.jsonl:1", "no 'task' field"]),
        # missing paths
        ("curate", lambda d: [d / "missing.jsonl"], ["missing.jsonl", "file not found"]),
        ("eval-predictions", lambda d: [d / "missing.jsonl"], ["missing.jsonl", "file not found"]),
        ("train", lambda d: [d / "missing.jsonl"], ["missing.jsonl", "file not found"]),
        # paths that cannot be written (a folder below a plain file: fails for root too)
        ("teach", lambda d: ["--run-dir", d / "plain-file" / "run"], ["plain-file", "choose another --run-dir"]),
        ("eval-predictions-out", lambda d: [d / "plain-file" / "out"], ["plain-file"]),
        ("curate-out", lambda d: [d / "plain-file" / "data"], ["plain-file"]),
        ("train-out", lambda d: [d / "plain-file" / "student"], ["plain-file", "choose another --output"]),
        # counts out of range, refused before anything runs (issue #24)
        ("teach", lambda d: ["--samples", "0"], ["samples", "greater than or equal to 1"]),
        ("eval", lambda d: ["--k", "0", "--model", "x"], ["--k 0", "greater than or equal to 1"]),
        ("curate", lambda d: [d / "r.jsonl", "--min-answer-f1", "2"], ["min_answer_f1", "less than or equal to 1"]),
        # a request cache that cannot be opened: named, with what to do (a locked or full one: test_cache_durability)
        ("teach-cache", lambda d: [f"cache={d / 'plain-file' / 'c.sqlite'}"], ["plain-file", "request cache"]),
        # no prompt fits the model's context window: refused in one line, nothing evaluated (issue #24)
        (
            "eval-window",
            small_window_eval,
            ["gsm8k: none of the 1 prompts fits", "context window of 64 tokens", "a longer context window"],
        ),
        # an unreachable API server
        (
            "teach-api",
            lambda d: ["--set", "teacher.options.base_url=http://127.0.0.1:9/v1"],
            ["http://127.0.0.1:9/v1", "connection error", "rerun to resume"],
        ),
    ],
)
def test_fault_matrix(tmp_path, command, fault, needles):
    (tmp_path / "plain-file").write_text("not a folder")
    (tmp_path / "preds.jsonl").write_text('{"output": "The answer is 1", "target": "1"}\n')
    extra = fault(tmp_path)
    env = {"COTBRIDGE_CACHE": str(tmp_path / "cache.sqlite")}
    if command == "teach":
        args = [
            "teach",
            "--task",
            "synthetic_arithmetic",
            "--teacher",
            "reference",
            "--run-dir",
            tmp_path / "r",
            *extra,
        ]
    elif command == "teach-api":
        args = [
            "teach",
            "--task",
            "synthetic_arithmetic",
            "--limit",
            "1",
            "--teacher",
            "openai",
            "--teacher-model",
            "m",
            "--run-dir",
            tmp_path / "r",
            "--set",
            "teacher.options.max_retries=1",
            *extra,
        ]
    elif command == "eval":
        args = ["eval", "--task", "synthetic_arithmetic", *extra]
    elif command == "eval-window":
        args = ["eval", *extra, "-o", tmp_path / "evaluated"]
    elif command == "eval-predictions":
        args = [
            "eval",
            "--task",
            "synthetic_arithmetic",
            "--predictions",
            *extra,
            "--gold-field",
            "target",
            "-o",
            tmp_path / "scored",
        ]
    elif command == "eval-predictions-out":
        args = [
            "eval",
            "--task",
            "synthetic_arithmetic",
            "--predictions",
            tmp_path / "preds.jsonl",
            "--gold-field",
            "target",
            "-o",
            *extra,
        ]
    elif command == "curate-out":
        taught_dir = tmp_path / "good"
        cli("teach", *REFERENCE, "--run-dir", taught_dir, env=env)
        args = ["curate", taught_dir / "teacher" / "synthetic_arithmetic.jsonl", "-o", *extra]
    elif command == "train-out":
        (tmp_path / "rows.jsonl").write_text('{"prompt": "Q ###", "completion": " A --> 1"}\n')
        args = ["train", tmp_path / "rows.jsonl", "-o", *extra]
    elif command == "teach-cache":  # a paid teacher: its cache is opened before the first call (none is made)
        args = [
            "teach",
            "--task",
            "synthetic_arithmetic",
            "--limit",
            "1",
            "--teacher",
            "openai",
            "--teacher-model",
            "m",
            "--set",
            "teacher.options.base_url=http://127.0.0.1:9/v1",
            "--run-dir",
            tmp_path / "r",
            "--set",
            *extra,
        ]
    elif command == "curate":
        args = ["curate", *extra, "-o", tmp_path / "data"]
    else:
        args = ["train", *extra, "-o", tmp_path / "student"]
    assert_one_line_error(cli(*args, env=env), *needles)
    assert not (tmp_path / "plain-file").is_dir() and (tmp_path / "plain-file").read_text() == "not a folder"


def test_curate_with_no_correct_record_fails_and_writes_nothing(taught, tmp_path):
    before = snapshot(taught)
    done = cli("curate", taught / "teacher" / "synthetic_arithmetic.jsonl", "-o", tmp_path / "data")
    assert_one_line_error(done, "none of 8 records passed the filters", "correct 8")
    assert not (tmp_path / "data" / "train.jsonl").exists() and snapshot(taught) == before


def test_training_refuses_untrainable_data_and_foreign_checkpoints(tmp_path, tiny_model_dir):
    long_rows = tmp_path / "long.jsonl"
    long_rows.write_text("".join(json.dumps({"prompt": "word " * 300, "completion": " yes"}) + "\n" for _ in range(4)))
    done = cli(
        "train",
        long_rows,
        "--model",
        tiny_model_dir,
        "-o",
        tmp_path / "s1",
        "--set",
        "max_length=64",
        "--set",
        "max_steps=2",
        "--set",
        "lora=false",
    )
    assert_one_line_error(done, "no trainable token", "max_length=64")
    assert not list((tmp_path / "s1").glob("checkpoint-*"))

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"Q{i} ###", "completion": f" A{i} --> {i}"}) + "\n" for i in range(8))
    )
    common = [
        "--model",
        tiny_model_dir,
        "-o",
        tmp_path / "s2",
        "--set",
        "lora=false",
        "--set",
        "batch_size=4",
        "--set",
        "save_strategy=steps",
        "--set",
        "save_steps=1",
    ]
    first = cli("train", rows, *common, "--set", "max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(tmp_path / "s2")
    other = tmp_path / "other.jsonl"
    other.write_text(rows.read_text().replace("A", "B"))
    again = cli("train", other, *common, "--set", "max_steps=3")
    assert_one_line_error(again, "holds checkpoints of another training run", "data_sha256", "choose another --output")
    assert snapshot(tmp_path / "s2") == before


def test_eval_output_folders_do_not_mix_evaluations(tmp_path):
    from cotbridge.errors import UserError
    from cotbridge.evaluation.run import EvalConfig, check_output

    a, b = EvalConfig(model="org/model-a"), EvalConfig(model="./students/b", mode="finetune_cot", k=4)
    assert str(a.output_dir()) == "runs/eval/model-a/zero_shot_cot" and b.output_dir().name == "finetune_cot-k4"
    out = tmp_path / "evaluated"
    out.mkdir()
    check_output(out, a)  # a fresh folder: taken, and marked with a's settings
    check_output(out, a)  # the same evaluation again: allowed (it overwrites its own files)
    with pytest.raises(UserError, match="holds the files of another evaluation .*model: 'org/model-a' -> "):
        check_output(out, b)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "gsm8k.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match="already holds gsm8k.jsonl"):
        check_output(stale, a)


def test_serve_answers_only_its_own_model_name():
    import urllib.error
    import urllib.request

    from tests.test_openai_backend import WordsBackend

    with OpenAICompatServer(WordsBackend(), port=0, model_name="smollm2") as server:
        body = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(f"{server.url}/chat/completions", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 404
        err = json.loads(e.value.read())["error"]
        assert err["code"] == "model_not_found" and "'gpt-4'" in err["message"] and "smollm2" in err["message"]
        ok = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(f"{server.url}/chat/completions", ok, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["model"] == "smollm2"


def test_ctrl_c_in_teach_says_what_was_kept_and_how_to_resume(tmp_path):
    from tests.test_openai_backend import WordsBackend

    with OpenAICompatServer(WordsBackend(), port=0, latency_ms=300, any_model=True) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cotbridge",
                "teach",
                "--task",
                "synthetic_arithmetic",
                "--limit",
                "200",
                "--teacher",
                "openai",
                "--teacher-model",
                "m",
                "--run-dir",
                str(tmp_path / "run"),
                "--set",
                f"teacher.options.base_url={server.url}",
                "--set",
                "chunk_size=4",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COTBRIDGE_CACHE": str(tmp_path / "c.sqlite")},
            # a harness that runs the suite in the background ignores SIGINT, and children inherit that: restore it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        records = tmp_path / "run" / "teacher" / "synthetic_arithmetic.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 4):
            time.sleep(0.2)
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "rerun the same command to resume" in err.strip().splitlines()[-1] and "Traceback" not in err
    stopped = next(line for line in err.splitlines() if "stopped:" in line)
    assert "USD spent this run" in stopped and "the same command resumes: cotbridge teach --task" in stopped
    kept = [json.loads(x) for x in records.read_text().splitlines()]
    assert len(kept) >= 4 and len({r["key"] for r in kept}) == len(kept)


def test_an_interrupted_generation_stops_early(tiny_backend):
    """The server sets ``interrupt`` while it generates: a client that hung up (or a shutdown) ends the work."""
    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import GenerationInterrupted

    calls = []
    tiny_backend.interrupt = lambda: calls.append(1) or len(calls) >= 2  # "gone" at the second poll
    try:
        with pytest.raises(GenerationInterrupted):
            tiny_backend.generate([Request(prompt="Q: a coin", max_tokens=400)], progress=False)
    finally:
        tiny_backend.interrupt = None
    assert len(calls) == 2  # polled every 8 tokens: stopped after ~16 of the 400 tokens
    out = tiny_backend.generate([Request(prompt="Q: a coin", max_tokens=12)], progress=False)
    assert out[0][0].completion_tokens > 0  # without an interrupt it generates as before


def test_peer_closed_tells_a_hung_up_client_from_a_waiting_one():
    import socket

    from cotbridge.server import _peer_closed

    a, b = socket.socketpair()
    try:
        assert not _peer_closed(a)  # connected, nothing sent: still waiting for its answer
        b.sendall(b"GET")  # a pipelined request is not a hang-up
        assert not _peer_closed(a)
        a.recv(3)
        b.close()
        assert _peer_closed(a)
    finally:
        a.close()


def test_an_unusable_request_cache_is_named(tmp_path):
    from cotbridge.backends.request_cache import RequestCache
    from cotbridge.errors import UserError

    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(UserError, match=r"plain-file/cache.sqlite: cannot open the request cache .*COTBRIDGE_CACHE"):
        RequestCache(tmp_path / "plain-file" / "cache.sqlite")


def test_a_command_that_fails_before_writing_leaves_no_folder_behind(tmp_path):
    """A teacher that cannot start (its replay file is missing) used to leave RUN_DIR/ with a .lock and the teach
    config copy in it; now the run directory the command created is gone again, and the error names the file."""
    run_dir = tmp_path / "runs" / "svamp"
    missing = tmp_path / "no_such_rationales.jsonl"
    done = cli("teach", "--task", "synthetic_arithmetic", "--limit", "4", "--teacher", "replay", "--teacher-model",
               missing, "--set", "teacher.options.id_field=id", "--run-dir", run_dir)  # fmt: skip
    assert_one_line_error(done, str(missing))
    assert not run_dir.exists()


def test_the_lock_removes_only_a_folder_it_created_and_left_empty(tmp_path):
    from cotbridge.folder_lock import folder_lock

    with folder_lock(tmp_path / "made"):
        pass
    assert not (tmp_path / "made").exists()  # made by the lock, nothing written: removed again
    with folder_lock(tmp_path / "used") as path:
        (path / "out.txt").write_text("x")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [".lock", "out.txt"]
    (tmp_path / "there").mkdir()
    with folder_lock(tmp_path / "there"):
        pass
    assert (tmp_path / "there").is_dir()  # the user's own folder stays, empty or not
    with folder_lock(tmp_path / "nested"), folder_lock(tmp_path / "nested"):  # re-entered: removed once, at the end
        pass
    assert not (tmp_path / "nested").exists()
