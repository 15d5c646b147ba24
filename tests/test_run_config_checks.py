"""Settings that a stage would only trip over after hours of work are refused when the config is read (a run's
methods and modes), and a recorded verdict must be a verdict (--reference-field)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cotbridge.errors import DataError
from cotbridge.evaluation.predictions import score_predictions, verdict_value


def run(config, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "run.yaml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "cotbridge", "run", str(path), "--set", f"run_dir={tmp_path / 'r'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("methods: []\n", "config key 'methods': List should have at least 1 item"),
        ("methods:\n  - {name: a, kind: prompt, mode: bogus}\n", "'methods.0.mode': Value error, unknown prompt mode"),
        ("methods:\n  - {name: a, kind: distill, format: fancy}\n", "unknown student format 'fancy'"),
        ("methods:\n  - {name: a, kind: prompt}\n  - {name: a, kind: vanilla}\n", "a named more than once"),
        ("teach_mode: zero_shot_cott\n", "did you mean 'zero_shot_cot'"),
    ],
)
def test_a_run_config_is_checked_before_any_stage(tmp_path, config, message):
    done = run("name: q\n" + config, tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


def test_recorded_verdicts_are_true_false_or_one_zero():
    values = [True, False, 1, 0, 1.0, 0.0, "true", "False", "1", "0", "yes", "no"]
    assert [verdict_value(v, "ref", "f.jsonl", 3) for v in values] == [True, False] * 6
    for bad in ("maybe", [1], 0.5, None, {"score": 1}):
        with pytest.raises(DataError, match=r"--reference-field ref: expected true/false or 1/0, got"):
            verdict_value(bad, "ref", "f.jsonl", 3)


def test_a_text_verdict_of_zero_counts_as_wrong(tmp_path):
    """The audit's case: "0" in the recorded field counted as correct under bool()."""
    path = tmp_path / "preds.jsonl"
    rows = [{"out": "The answer is 7.", "gold": "7", "ref": "0"} for _ in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = score_predictions("gsm8k", path, "out", tmp_path / "scored", gold_field="gold", reference_field="ref")
    metrics = summary["results"]["gsm8k"]
    assert metrics["accuracy"] == 1.0 and metrics["reference_accuracy"] == 0.0 and metrics["agreement"] == 0.0
