"""Decontamination: training questions that overlap a test question (exact, 13-gram, fuzzy) are found and dropped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cotbridge.decontaminate import TestIndex, build_index, decontaminate
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "finetune_cot").is_dir(), reason="needs ../shared/data")
LONG = "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"


def test_exact_ngram_short_and_fuzzy_matches():
    index = TestIndex(n=13, fuzzy=0.7)
    index.add("t", "long", LONG + ". How many clips did Natalia sell altogether in April and May?")
    index.add("t", "short", "What is 2 plus 3?")
    assert index.matches(LONG + ".")[0].kind == "ngram"  # shares a 13-gram
    assert [m.test_id for m in index.matches("Q: what is 2 plus 3? A: 5")] == ["short"]  # a short question, whole
    assert index.matches("What is 2 plus 3")[0].kind == "exact"  # same words, punctuation aside
    # one word changed in the middle of a 19-word question: no 13-gram survives, 0.7 of the trigrams do
    index.add("t", "medium", "A farmer has 12 cows and 30 sheep on his farm and sells a third of the sheep today.")
    fuzzy = index.matches("A farmer has 12 cows and 30 goats on his farm and sells a third of the sheep today.")
    assert [(m.kind, m.test_id) for m in fuzzy] == [("fuzzy", "medium")] and 0.7 <= fuzzy[0].score < 1
    assert index.matches("Tom has 3 apples and buys 4 more. How many apples does he have now?") == []


def test_templated_tasks_count_only_verbatim_repeats():
    index = build_index(["synthetic_coin_flip:n_test=20"], n=13)
    assert index.exact_only == {"synthetic_coin_flip"}
    question = index.entries[0][2]
    other = question.replace(question.split()[4], "Zyxw")  # another person: the same template, not the question
    assert [m.kind for m in index.matches(question)] == ["exact"] and index.matches(other) == []


@needs_data
def test_multiarith_repeats_across_its_official_train_and_test_indices_are_found():
    from cotbridge.tasks import get_task

    task = get_task("multiarith")
    index = build_index(["multiarith"], data_dir=str(SHARED_DATA))
    train = [{"question": ex.question, "example_id": ex.id} for ex in task.load("train", str(SHARED_DATA))]
    kept, dropped = decontaminate(train, index)
    exact = [d for d in dropped if d["matches"][0]["kind"] == "exact"]
    assert len(exact) >= 5 and len(kept) + len(dropped) == len(train)
    assert all(d["reason"].startswith("exact overlap with multiarith test question") for d in exact)


@needs_data
def test_curate_drops_a_test_question_and_says_which(tmp_path):
    from cotbridge.tasks import get_task

    test_q = get_task("gsm8k").load("test", str(SHARED_DATA))[3].question
    records = [
        {
            "key": f"{i}#0",
            "task": "gsm8k",
            "example_id": str(i),
            "sample": 0,
            "question": q,
            "gold": "1",
            "rationale": "1 + 0 = 1.",
            "prediction": "1",
            "correct": True,
            "finish_reason": {"rationale": "stop"},
        }
        for i, q in enumerate([test_q, "Tom has 3 apples and buys 4 more. How many apples does he have now?"])
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "curate",
            str(path),
            "-o",
            str(tmp_path / "data"),
            "--data-dir",
            str(SHARED_DATA),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decontamination: dropped 1 of 2" in done.stdout
    kept = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert len(kept) == 1 and "Tom has 3 apples" in kept[0]["prompt"]
    report = json.loads((tmp_path / "data" / "decontamination.json").read_text())
    assert report["dropped"][0]["example_id"] == "0" and report["dropped"][0]["matches"][0]["task"] == "gsm8k"
    assert report["summary"]["by_kind"] == {"exact": 1}


def test_eval_warns_when_the_model_trained_on_its_test_questions(tmp_path, caplog):
    from cotbridge.evaluation.run import warn_if_trained_on
    from cotbridge.tasks import get_task

    task = get_task("synthetic_arithmetic")
    tests = task.load("test", None, n_test=20)
    model = tmp_path / "student"
    model.mkdir()
    (model / "training_prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{q.question} ###"}) for q in tests[:3]).replace("}{", "}\n{") + "\n"
    )
    with caplog.at_level("WARNING"):
        assert warn_if_trained_on(str(model), [(task, {}, tests)]) == 3
    assert "trained on 3 of the 20 questions it is tested on" in caplog.text
    clean = tmp_path / "clean"
    clean.mkdir()
    other = task.load("train", None, n_train=20)
    (clean / "training_prompts.jsonl").write_text("".join(json.dumps({"prompt": q.question}) + "\n" for q in other))
    assert warn_if_trained_on(str(clean), [(task, {}, tests)]) == 0  # a template shared is not a question seen
