"""Hub loaders map each public copy's fields onto Example (datasets.load_dataset is replaced: no network)."""

from __future__ import annotations

import pytest

from cotbridge.errors import UserError
from cotbridge.tasks import get_task

ROWS = {
    "openai/gsm8k": [{"question": "Q1?", "answer": "3 + 4 = <<3+4=7>>7\n#### 1,007"}],
    "tau/commonsense_qa": [
        {"question": "Where?", "choices": {"label": ["A", "B"], "text": ["home", "zoo"]}, "answerKey": "B"}
    ],
    "ChilleD/SVAMP": [{"Body": "Tom has 3 apples", "Question": "How many?", "Answer": 3}],
    "hotpotqa/hotpot_qa": [
        {
            "id": "x1",
            "question": "Who?",
            "answer": "Ann",
            "context": {"title": ["T1", "T2"], "sentences": [["Ann is", " here."], ["Bob."]]},
        }
    ],
}


def test_hub_copies_map_to_examples(fake_hub):
    [g] = get_task("gsm8k").load("test")
    assert (g.question, g.answer) == ("Q1?", "1007")
    [c] = get_task("commonsense_qa").load("test")
    assert c.question == "Where? Answer choices: (A) home, (B) zoo." and c.answer == "B"
    [s] = get_task("svamp").load("train")
    assert s.question == "Tom has 3 apples. How many?" and s.answer == "3.0"
    [h] = get_task("hotpotqa").load("test")
    assert h.context == "T1: Ann is  here.\n\nT2: Bob." and h.answer == "Ann"
    assert ("tau/commonsense_qa", None, "validation") in fake_hub and (
        "hotpotqa/hotpot_qa",
        "distractor",
        "validation",
    ) in fake_hub


def test_task_without_hub_copy_asks_for_data_dir(fake_hub):
    with pytest.raises(UserError, match="no known hub copy: pass --data-dir"):
        get_task("coin_flip").load("test")
