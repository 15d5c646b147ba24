"""Inputs are validated before any expensive step (issue #24), as a class: for every command that reads a user's
file (training rows, dev examples, task data, predictions, teacher records, model folders), a bad input ends in one
line naming the file and line (or the config key), exit 2, before a model is loaded or a teacher is asked anything.

Each case runs the real CLI in a process whose expensive steps are booby-trapped: reading a model's weights or
sending a request through the request cache (every teacher call goes through it) exits with status 99 instead."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_faults import assert_one_line_error

TRAPPED = textwrap.dedent(
    """
    import sys

    import cotbridge.backends.request_cache as request_cache
    import cotbridge.models.loading as loading

    def expensive(*args, **kwargs):
        sys.stderr.write("an expensive step was reached before the bad input was found\\n")
        sys.exit(99)

    loading.read_model_and_tokenizer = expensive
    request_cache.CachedBackend.generate = expensive
    from cotbridge.cli import main

    sys.argv = ["cotbridge", *sys.argv[1:]]
    main()
    """
)


def trapped_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TRAPPED, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def jsonl(path: Path, *rows: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GSM8K_ROW = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}


def bad_task_data(d: Path) -> None:
    for split in ("train", "test"):  # line 3 lacks the answer
        jsonl(d / "data" / "gsm8k" / f"{split}.jsonl", GSM8K_ROW, GSM8K_ROW, {"question": "no answer"})


def quickstart_config(d: Path, **student: str) -> Path:
    cfg = {
        "name": "q",
        "run_dir": str(d / "run"),
        "task": "synthetic_coin_flip:k=2",
        "train_limit": 4,
        "teacher": {"backend": "reference"},
        "student": {"model": "smollm2-135m-instruct", **student},
        "eval": {"limit": 2},
    }
    (d / "run.yaml").write_text(json.dumps(cfg))
    return d / "run.yaml"


# (case, setup(d) -> argv, what the error line names)
CASES = {
    "train: a row without its completion": (
        lambda d: ["train", jsonl(d / "rows.jsonl", {"prompt": "a", "completion": "b"}, {"prompt": "a"}), "-o", "out"],
        ["rows.jsonl:2", "'completion'"],
    ),
    "train: a prompt that is neither text nor messages": (
        lambda d: [
            "train",
            jsonl(d / "rows.jsonl", {"prompt": "a", "completion": "b"}, "", {"prompt": 5, "completion": "b"}),
            "-o",
            "out",
        ],
        ["rows.jsonl:3", "'prompt'"],  # the line number counts the blank line, as an editor does
    ),
    "train: an empty data file": (
        lambda d: ["train", jsonl(d / "rows.jsonl"), "-o", "out"],
        ["rows.jsonl", "no training rows"],
    ),
    "train: a dev example without its answer": (
        lambda d: [
            "train",
            jsonl(d / "rows.jsonl", {"prompt": "a", "completion": "b"}),
            "--dev",
            jsonl(d / "dev.jsonl", {"id": "1", "question": "q", "answer": "1"}, {"id": "2", "question": "q"}),
            "--task",
            "gsm8k",
            "-o",
            "out",
        ],
        ["dev.jsonl:2", "answer"],
    ),
    "eval: task data with a bad row": (
        lambda d: (bad_task_data(d), ["eval", "--task", "gsm8k", "--data-dir", d / "data", "--limit", "2"])[1],
        ["test.jsonl:3"],
    ),
    "eval: a model folder without weights": (
        lambda d: ((d / "empty").mkdir(), ["eval", "--model", d / "empty", "--task", "synthetic_coin_flip"])[1],
        ["holds no model weights"],
    ),
    "eval --predictions: a line that is not JSON": (
        lambda d: [
            "eval",
            "--predictions",
            jsonl(d / "p.jsonl", {"output": "5"}, '{"output": '),
            "--task",
            "gsm8k",
            "--gold-field",
            "gold",
        ],
        ["p.jsonl:2", "invalid JSON"],
    ),
    "teach: task data with a bad row": (
        lambda d: (bad_task_data(d), ["teach", "--task", "gsm8k", "--data-dir", d / "data", "--run-dir", d / "r"])[1],
        ["train.jsonl:3"],
    ),
    "curate: a record that is not a teacher record": (
        lambda d: ["curate", jsonl(d / "rec.jsonl", {"prompt": "a"}), "-o", d / "cur"],
        ["rec.jsonl:1"],
    ),
    "run: a student folder that does not exist": (
        lambda d: ["run", quickstart_config(d, model=str(d / "no-such-student"))],
        ["student.model", "does not exist"],
    ),
    "run: a student folder without weights": (
        lambda d: ((d / "empty").mkdir(), ["run", quickstart_config(d, model=str(d / "empty"))])[1],
        ["student.model", "holds no model weights"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_named_before_any_expensive_step(tmp_path, case):
    setup, needles = CASES[case]
    argv = [str(a) for a in setup(tmp_path)]
    done = trapped_cli(tmp_path, *argv)
    assert done.returncode != 99, f"{case}: {done.stderr[-1500:]}"
    assert_one_line_error(done, *needles)
    assert not (tmp_path / "run").exists(), "a recipe refused up front leaves no run directory"


def test_the_trap_springs_when_the_input_is_good(tmp_path):
    """The harness itself: with good rows, the same train command reaches the model load (status 99)."""
    rows = jsonl(tmp_path / "rows.jsonl", {"prompt": "a", "completion": "b"})
    done = trapped_cli(tmp_path, "train", rows, "--model", "smollm2-135m-instruct", "-o", "out")
    assert done.returncode == 99, done.stderr[-1500:]


def test_a_model_folder_with_broken_weights_is_one_line(tmp_path, tiny_model_dir):
    """Loading is the check for weights that only the loader can read: a corrupt file ends in one line naming the
    folder, not a safetensors traceback."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", "eval", "--model", str(broken), "--task", "synthetic_coin_flip"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert_one_line_error(done, "could not load model", str(broken))
