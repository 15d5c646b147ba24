"""The command line: task listing, a real eval run on a tiny saved model, one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import SHARED_DATA


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cotbridge", *args], capture_output=True, text=True, **kw)


def test_tasks_lists_every_task_with_split_sizes():
    done = cli("tasks")
    assert done.returncode == 0
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["svamp"][4:6] == ["700", "300"] and rows["commonsense_qa"][5:7] == ["9741", "1221"]
    assert "synthetic_arithmetic" in rows and "2wikimultihopqa" in rows


def test_help_shows_quickstart_examples():
    assert "cotbridge eval --model" in cli("--help").stdout


def test_eval_on_tiny_model(tmp_path, tiny_model_dir):
    done = cli(
        "eval",
        "--model",
        str(tiny_model_dir),
        "--task",
        "synthetic_coin_flip:n_test=5",
        "--mode",
        "zero_shot_cot",
        "--max-tokens",
        "8",
        "--k",
        "2",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    m = res["results"]["synthetic_coin_flip"]
    assert m["n"] == 5 and m["k"] == 2 and "pass@2" in m
    assert res["model"] == str(tiny_model_dir)
    rows = [json.loads(x) for x in (tmp_path / "synthetic_coin_flip.jsonl").read_text().splitlines()]
    assert all(len(r["samples"]) == 2 and "answer_output" in r["samples"][0] for r in rows)


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval", "--task", "svmap", "--model", "x"], "unknown task 'svmap'; did you mean 'svamp'"),
        (
            ["eval", "--task", "svamp", "--data-dir", str(SHARED_DATA), "--model", "./missing-model"],
            "model path ./missing-model does not exist",
        ),
        (
            ["eval", "--task", "svamp", "--data-dir", "/nonexistent-dir", "--model", "x"],
            "data directory /nonexistent-dir does not exist",
        ),
        (
            ["eval", "--task", "svamp", "--data-dir", str(SHARED_DATA), "--mode", "zero_shot_cott", "--model", "x"],
            "did you mean 'zero_shot_cot'",
        ),
        (
            ["eval", "--task", "svamp", "--predictions", "missing.jsonl", "--gold-field", "target"],
            "missing.jsonl: file not found",
        ),
        (["eval", "--task", "svamp", "--set", "bogus=1", "--model", "x"], "unknown config key 'bogus'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    done = cli(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_malformed_predictions_file_names_line(tmp_path):
    bad = tmp_path / "preds.jsonl"
    bad.write_text('{"output": "--> 3", "target": 3}\n[1, 2]\n')
    done = cli(
        "eval", "--task", "svamp", "--predictions", str(bad), "--gold-field", "target", "--output", str(tmp_path / "o")
    )
    assert done.returncode == 2 and f"{bad}:2: expected a JSON object" in done.stderr


def test_train_command_on_tiny_model(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q{i} ###", "completion": f" {i} --> {i}"}) + "\n" for i in range(8))
    )
    done = cli(
        "train",
        str(data),
        "--model",
        str(tiny_model_dir),
        "-o",
        str(tmp_path / "student"),
        "--set",
        "max_steps=2",
        "--set",
        "lora=false",
        "--set",
        "batch_size=4",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained 2 steps on 8 examples" in done.stdout
    assert (tmp_path / "student" / "model.safetensors").exists()
