"""Task registry, loaders for the shared data, and clear errors for bad data."""

from __future__ import annotations

import json

import pytest

from cotbridge.errors import DataError, UserError
from cotbridge.tasks import TASKS, get_task, parse_task_spec
from tests.conftest import SHARED_DATA

CANONICAL = [
    "single_eq",
    "addsub",
    "multiarith",
    "gsm8k",
    "aqua",
    "svamp",
    "date_understanding",
    "tracking_shuffled_objects",
    "last_letter_concatenation",
    "coin_flip",
    "commonsense_qa",
    "strategy_qa",
    "hotpotqa",
    "2wikimultihopqa",
]


def test_every_canonical_task_is_registered():
    assert set(CANONICAL) <= set(TASKS.names())
    assert {n for n in TASKS.names() if n.startswith("synthetic_")} >= {
        "synthetic_arithmetic",
        "synthetic_coin_flip",
        "synthetic_last_letter",
        "synthetic_shuffled_objects",
    }


def test_typo_suggests_the_task():
    with pytest.raises(UserError, match="did you mean 'svamp'"):
        get_task("svmap")


# Split sizes from PAPERS.md; each must be what the shared data actually yields.
@pytest.mark.parametrize("name", [n for n in CANONICAL[:12] if n != "aqua"])
def test_finetune_cot_splits_match_the_paper(name):
    task = get_task(name)
    train, test = (task.load(s, SHARED_DATA) for s in ("train", "test"))
    assert (len(train), len(test)) == (task.sizes["train"], task.sizes["test"])
    assert not {e.id for e in train} & {e.id for e in test}  # (MultiArith and StrategyQA repeat a few questions)
    assert all(e.answer for e in test)


def test_aqua_test_from_official_file_and_missing_train_is_a_clear_error():
    test = get_task("aqua").load("test", SHARED_DATA)
    assert len(test) == 254 and test[0].answer in "ABCDE" and "Answer choices: (A)" in test[0].question
    with pytest.raises(UserError, match="no train data"):
        get_task("aqua").load("train", SHARED_DATA)


def test_gsm8k_from_official_jsonl_keeps_line_numbers_as_ids():
    test = get_task("gsm8k").load("test", SHARED_DATA)
    first = json.loads((SHARED_DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[0])
    assert test[0].id == "test-0" and test[0].question == first["question"].strip() and test[0].answer == "18"


@pytest.mark.parametrize("name", ["hotpotqa", "2wikimultihopqa"])
def test_multihop_has_context_and_disjoint_seeded_splits(name):
    task = get_task(name)
    train, test = task.load("train", SHARED_DATA), task.load("test", SHARED_DATA)
    assert (len(train), len(test)) == (300, 200)
    assert not {e.id for e in train} & {e.id for e in test}
    assert all(e.context and e.answer for e in test)
    assert [e.id for e in task.load("test", SHARED_DATA)] == [e.id for e in test]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    good = json.dumps({"question": "q?", "answer": "x\n#### 3"})
    (folder / "test.jsonl").write_text(f"{good}\n{good}\n{{not json\n")
    with pytest.raises(DataError, match=r"test\.jsonl:3: invalid JSON"):
        get_task("gsm8k").load("test", tmp_path)
    (folder / "test.jsonl").write_text(f'{good}\n{{"question": "no answer"}}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: expected \{question, answer\}"):
        get_task("gsm8k").load("test", tmp_path)


def test_split_index_out_of_range_and_empty_split(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "split").mkdir()
    (tmp_path / "dataset" / "svamp.json").write_text(json.dumps([{"question": "q", "answer": "1"}]))
    (tmp_path / "split" / "svamp__default.json").write_text(json.dumps({"train": [], "test": [0, 5]}))
    with pytest.raises(DataError, match="index 5 in 'test' is outside svamp.json"):
        get_task("svamp").load("test", tmp_path)
    with pytest.raises(UserError, match="the train split is empty"):
        get_task("svamp").load("train", tmp_path)


def test_missing_data_dir_and_unknown_split():
    with pytest.raises(UserError, match="does not exist"):
        get_task("svamp").load("test", "/nonexistent/cotbridge-data")
    with pytest.raises(UserError, match="unknown split 'dev'"):
        get_task("svamp").load("dev", SHARED_DATA)


def test_task_spec_parameters():
    task, params = parse_task_spec("synthetic_arithmetic:k=2,n_test=10")
    assert task.name == "synthetic_arithmetic" and params == {"k": 2, "n_test": 10}
    assert len(task.load("test", **params)) == 10
    with pytest.raises(UserError, match="is not a int"):
        parse_task_spec("synthetic_arithmetic:k=two")
    with pytest.raises(UserError, match="takes no parameter"):
        task.load("test", depth=3)
