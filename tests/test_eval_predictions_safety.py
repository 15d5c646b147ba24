"""``cotbridge eval`` refuses what used to lose or mis-score data (issue #24, round 3): scoring onto its own
predictions file or into a folder another command holds or a model evaluation wrote, predictions matched to the
split's questions by position instead of by id, and counts out of range (--k 0 reported an accuracy of 0)."""

from __future__ import annotations

import json
import os
import random

import pytest
from typer.testing import CliRunner

from cotbridge.cli.app import app
from cotbridge.errors import DataError, UserError
from cotbridge.evaluation.predictions import score_predictions
from cotbridge.folder_lock import folder_lock
from cotbridge.tasks import get_task
from tests.conftest import RE2, SHARED_DATA
from tests.test_faults import assert_one_line_error, cli

SVAMP_RE2 = RE2 / "svamp__gpt-4o-mini-2024-07-18.jsonl"
TEXT = "cot.generation.0"


def re2_svamp() -> list[dict]:
    return [json.loads(line) for line in SVAMP_RE2.read_text(encoding="utf-8").splitlines()]


def svamp_test_ids() -> list[str]:
    return [ex.id for ex in get_task("svamp").load("test", str(SHARED_DATA))]


def write_jsonl(path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_scoring_refuses_to_write_over_its_own_predictions(tmp_path):
    """A model evaluation's svamp.jsonl scored into its own folder used to be replaced by the scores."""
    out = tmp_path / "eval"
    predictions = out / "svamp.jsonl"
    write_jsonl(predictions, re2_svamp()[:5])
    before = predictions.read_bytes()
    done = cli("eval", "--task", "svamp", "--predictions", predictions, "--text-field", TEXT, "--gold-field", "target",
               "-o", out)  # fmt: skip
    assert_one_line_error(done, f"--predictions {predictions}", "this scoring would write", "choose another --output")
    assert predictions.read_bytes() == before
    assert not (out / "results.json").exists()


def test_the_same_file_reached_through_a_link_is_refused_too(tmp_path):
    out = tmp_path / "eval"
    write_jsonl(out / "svamp.jsonl", re2_svamp()[:5])
    (tmp_path / "alias").symlink_to(out)
    before = (out / "svamp.jsonl").read_bytes()
    with pytest.raises(UserError, match="this scoring would write"):
        score_predictions("svamp", tmp_path / "alias" / "svamp.jsonl", TEXT, out, gold_field="target")
    assert (out / "svamp.jsonl").read_bytes() == before


def test_a_second_scoring_into_a_held_folder_is_refused(tmp_path):
    """Two scorings into one folder (the default runs/scored) used to replace each other's results."""
    write_jsonl(tmp_path / "p.jsonl", re2_svamp()[:5])
    out = tmp_path / "scored"
    with folder_lock(out, "--output"):
        done = cli("eval", "--task", "svamp", "--predictions", tmp_path / "p.jsonl", "--text-field", TEXT,
                   "--gold-field", "target", "-o", out)  # fmt: skip
    assert_one_line_error(done, str(out), f"in use by PID {os.getpid()}", "choose another --output")
    assert not (out / "results.json").exists() and not (out / "svamp.jsonl").exists()


def test_scoring_keeps_a_model_evaluations_folder(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", re2_svamp()[:5])
    out = tmp_path / "eval"
    out.mkdir()
    (out / "evaluation.json").write_text('{"config": {"model": "m"}}')
    (out / "results.json").write_text('{"model": "m", "results": {}}')
    with pytest.raises(UserError, match="holds a model evaluation"):
        score_predictions("svamp", tmp_path / "p.jsonl", TEXT, out, gold_field="target")
    assert (out / "results.json").read_text() == '{"model": "m", "results": {}}'
    assert not (out / "svamp.jsonl").exists()


def test_ids_are_matched_by_id_not_by_position(tmp_path):
    """RE2's SVAMP test questions, shuffled: scored through the split by id they must score exactly as by the
    file's own targets (by position they scored 0.037 instead of 0.953). Their questions differ from the split's
    in punctuation only, which the check tolerates."""
    test_ids = set(svamp_test_ids())
    records = [r for r in re2_svamp() if str(r["id"]) in test_ids]
    assert len(records) == 300
    random.Random(0).shuffle(records)
    write_jsonl(tmp_path / "p.jsonl", records)
    by_id = score_predictions(
        "svamp", tmp_path / "p.jsonl", TEXT, tmp_path / "a", id_field="id", data_dir=str(SHARED_DATA)
    )
    by_gold = score_predictions("svamp", tmp_path / "p.jsonl", TEXT, tmp_path / "b", gold_field="target")
    assert by_id["results"]["svamp"]["accuracy"] == by_gold["results"]["svamp"]["accuracy"] > 0.9
    scored = [json.loads(line) for line in (tmp_path / "a" / "svamp.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scored] == [str(r["id"]) for r in records]
    assert [float(s["gold"]) for s in scored] == [r["target"] for r in records]


def test_an_id_naming_another_question_is_refused(tmp_path):
    """Each id moved to the next test question: the recorded questions give the mix-up away."""
    ids = svamp_test_ids()
    following = dict(zip(ids, ids[1:] + ids[:1]))
    records = [{**r, "id": int(following[str(r["id"])])} for r in re2_svamp() if str(r["id"]) in following][:20]
    write_jsonl(tmp_path / "shifted.jsonl", records)
    done = cli("eval", "--task", "svamp", "--data-dir", SHARED_DATA, "--predictions", tmp_path / "shifted.jsonl",
               "--text-field", TEXT, "--id-field", "id", "-o", tmp_path / "scored")  # fmt: skip
    assert_one_line_error(
        done, "shifted.jsonl:1:", f"id {records[0]['id']} names another question", "20 of 20 records disagree"
    )
    assert not (tmp_path / "scored" / "svamp.jsonl").exists()


def test_an_id_outside_the_split_is_refused_naming_it_and_its_line(tmp_path):
    test_ids = set(svamp_test_ids())
    inside = [r for r in re2_svamp() if str(r["id"]) in test_ids][:2]
    outside = next(r for r in re2_svamp() if str(r["id"]) not in test_ids)  # a train question
    write_jsonl(tmp_path / "p.jsonl", [inside[0], outside, inside[1]])
    with pytest.raises(DataError) as refused:
        score_predictions(
            "svamp", tmp_path / "p.jsonl", TEXT, tmp_path / "o", id_field="id", data_dir=str(SHARED_DATA)
        )
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'p.jsonl'}:2: id {outside['id']} is not an id of the test split of svamp")
    assert "1 of the file's 3 ids" in message and "--gold-field" in message and "\n" not in message


def test_an_id_named_twice_is_refused(tmp_path):
    test_ids = set(svamp_test_ids())
    a, b = [r for r in re2_svamp() if str(r["id"]) in test_ids][:2]
    write_jsonl(tmp_path / "p.jsonl", [a, b, a])
    with pytest.raises(DataError, match=r"p\.jsonl:3: id \d+ is named twice \(lines 1 and 3\)"):
        score_predictions(
            "svamp", tmp_path / "p.jsonl", TEXT, tmp_path / "o", id_field="id", data_dir=str(SHARED_DATA)
        )


def test_k_0_is_refused_when_the_command_line_is_read(tmp_path):
    """--k 0 used to run and report an accuracy of 0; now nothing runs and no folder is made."""
    done = cli("eval", "--task", "synthetic_arithmetic", "--model", "x", "--k", "0", "-o", tmp_path / "out")
    assert_one_line_error(done, "--k 0: must be greater than or equal to 1 (config key k)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--k", "-1"], "--k -1: must be greater than or equal to 1"),
        (["--limit", "0"], "--limit 0: must be greater than or equal to 1"),
        (["--batch-size", "0"], "--batch-size 0: must be greater than or equal to 1"),
        (["--max-tokens", "0"], "--max-tokens 0: must be greater than or equal to 1"),
        (["--temperature", "-0.5"], "--temperature -0.5: must be greater than or equal to 0 and less than or equal"),
        (
            ["--temperature", "2.5"],
            "--temperature 2.5: must be greater than or equal to 0 and less than or equal to 2",
        ),
        (["--set", "k=0"], "config key 'k': 0 is out of range: must be greater than or equal to 1"),
        (["--set", "answer_max_tokens=0"], "config key 'answer_max_tokens': 0 is out of range: must be greater than"),
        (["--set", "top_p=0"], "config key 'top_p': 0 is out of range: must be greater than 0 and less than or equal"),
        # checked before --predictions is read: the file does not exist
        (["--k", "0", "--predictions", "missing.jsonl", "--gold-field", "t"], "--k 0: must be greater than"),
    ],
)
def test_counts_out_of_range_are_refused_before_anything_runs(tmp_path, args, needle):
    result = CliRunner().invoke(
        app, ["eval", "--task", "synthetic_arithmetic", "--model", "x", "-o", str(tmp_path / "out"), *args]
    )
    assert isinstance(result.exception, UserError), result.output
    assert needle in str(result.exception)
    assert not (tmp_path / "out").exists()
