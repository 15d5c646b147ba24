"""Scoring released teacher outputs with --predictions agrees with the files' own per-record scores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cotbridge.evaluation.predictions import score_predictions
from tests.conftest import RE2

FILES = [
    ("svamp", "svamp__gpt-4o-mini-2024-07-18.jsonl", "target"),
    ("gsm8k", "gsm8k_test__gpt-3.5-turbo.jsonl", "target"),
    ("commonsense_qa", "commonsenseqa_dev__gpt-3.5-turbo.jsonl", "answerKey"),
]


@pytest.mark.parametrize("task,filename,gold", FILES)
@pytest.mark.parametrize("generation", ["cot", "vanilla"])
def test_agreement_with_recorded_scores(tmp_path, task, filename, gold, generation):
    summary = score_predictions(
        task,
        RE2 / filename,
        f"{generation}.generation.0",
        tmp_path,
        gold_field=gold,
        reference_field=f"{generation}.score",
    )
    m = summary["results"][task]
    assert m["agreement"] >= 0.98
    assert abs(m["accuracy"] - m["reference_accuracy"]) < 0.01
    lines = (tmp_path / f"{task}.jsonl").read_text().splitlines()
    assert len(lines) == m["n"]  # one scored record per input record, none dropped


def test_id_field_matches_the_test_split_ids(tmp_path):
    """GSM8K ids are line numbers of test.jsonl (the task's test-N): scoring by id must equal scoring by the file's
    own target."""
    data_dir = RE2.parents[1]
    by_id = score_predictions(
        "gsm8k",
        RE2 / "gsm8k_test__text-davinci-003.jsonl",
        "cot.generation.0",
        tmp_path / "a",
        id_field="id",
        id_template="test-{}",
        data_dir=str(data_dir),
    )
    by_gold = score_predictions(
        "gsm8k", RE2 / "gsm8k_test__text-davinci-003.jsonl", "cot.generation.0", tmp_path / "b", gold_field="target"
    )
    assert by_id["results"]["gsm8k"]["accuracy"] == by_gold["results"]["gsm8k"]["accuracy"]


def test_cli_scores_predictions_and_reports_bad_fields(tmp_path):
    src = RE2 / "svamp__gpt-4o-mini-2024-07-18.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "cotbridge",
        "eval",
        "--task",
        "svamp",
        "--predictions",
        str(src),
        "--text-field",
        "cot.generation.0",
        "--gold-field",
        "target",
        "--output",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "accuracy 0.938" in done.stdout
    assert json.loads((tmp_path / "results.json").read_text())["results"]["svamp"]["n"] == 1000
    bad = subprocess.run(
        cmd[:-6] + ["--text-field", "cot.generations.0", "--gold-field", "target", "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "svamp__gpt-4o-mini-2024-07-18.jsonl:1" in bad.stderr and "cot.generations.0" in bad.stderr
    assert "Traceback" not in bad.stderr
