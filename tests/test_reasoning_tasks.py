"""MATH-500, AIME 2024/2025 and GPQA-Diamond: hub loaders (load_dataset stubbed), versions, answer types; math
answers checked by math-verify."""

from __future__ import annotations

import json

import pytest

from cotbridge.answers.score import score_output
from cotbridge.errors import UserError
from cotbridge.tasks import TASKS, get_task

ROWS = {
    "HuggingFaceH4/MATH-500": [
        {
            "problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.",
            "answer": "\\frac{3}{4}",
            "unique_id": "test/algebra/1.json",
            "subject": "Algebra",
            "level": 1,
        }
    ],
    "HuggingFaceH4/aime_2024": [{"id": 60, "problem": "Find the remainder when ...", "answer": "204"}],
    "yentinglin/aime_2025": [{"id": "I-1", "problem": "Find the sum of all integer bases ...", "answer": "70"}],
    "Idavidrein/gpqa": [
        {
            "Record ID": "rec1",
            "Question": "Which particle is a lepton?",
            "Correct Answer": "muon",
            "Incorrect Answer 1": "proton",
            "Incorrect Answer 2": "neutron",
            "Incorrect Answer 3": "pion",
        }
    ],
}


def test_reasoning_sets_load_from_their_hub_copies(fake_hub):
    math = get_task("math500").load("test")[0]
    assert (math.id, math.answer, math.meta["level"]) == ("test/algebra/1.json", "\\frac{3}{4}", 1)
    assert get_task("aime24").load("test")[0].answer == "204" and get_task("aime25").load("test")[0].id == "I-1"
    gpqa = get_task("gpqa_diamond").load("test")[0]
    assert gpqa.meta["choices"][gpqa.answer] == "muon" and "Answer choices: (A)" in gpqa.question
    assert get_task("gpqa_diamond").load("test")[0].answer == gpqa.answer  # the shuffle is seeded by the record id
    assert ("Idavidrein/gpqa", "gpqa_diamond", "train") in fake_hub and (
        "HuggingFaceH4/MATH-500",
        None,
        "test",
    ) in fake_hub
    assert get_task("math500").version == "HuggingFaceH4/MATH-500@test"  # the copy the results were computed on
    with pytest.raises(UserError, match="test set: it has no train split"):
        get_task("aime24").load("train")
    assert {"math500", "aime24", "aime25", "gpqa_diamond"} <= set(TASKS)


def test_reasoning_sets_read_a_local_copy_in_the_hub_fields(tmp_path):
    (tmp_path / "reasoning").mkdir()
    (tmp_path / "reasoning" / "aime25.jsonl").write_text(json.dumps(ROWS["yentinglin/aime_2025"][0]) + "\n")
    assert get_task("aime25").load("test", tmp_path)[0].answer == "70"
    with pytest.raises(UserError, match="no .*aime24.jsonl"):
        get_task("aime24").load("test", tmp_path)


@pytest.mark.parametrize(
    "text,gold,correct",
    [
        ("So $x = \\boxed{\\dfrac{3}{4}}$.", "\\frac{3}{4}", True),
        ("The answer is $0.75$.", "\\frac{3}{4}", True),
        ("\\boxed{[1, 2)}", "[1,2)", True),
        ("\\boxed{3\\text{ cm}}", "3", True),
        ("<think>Try \\boxed{204}.</think> So \\boxed{205}", "204", False),  # never read from the thinking
        ("\\boxed{\\frac{2}{3}}", "\\frac{3}{4}", False),
    ],
)
def test_math_answers_are_checked_by_equivalence(text, gold, correct):
    assert score_output(text, [gold], "math").correct is correct


def test_a_gpqa_answer_written_as_the_option_text_counts(fake_hub):
    from cotbridge.tasks.base import answer_choices

    task = get_task("gpqa_diamond")
    ex = task.load("test")[0]
    v = score_output(
        "A muon is a lepton: \\boxed{muon}", ex.golds, "choice", letters="ABCD", choices=answer_choices(task, ex)
    )
    assert v.correct and v.prediction == ex.answer
