"""Reasoning-model outputs: the thinking is kept apart from the final response, answers are never read from inside
the thinking, unfinished traces are never trained on; multiple-choice answers written as an option's text."""

from __future__ import annotations

from cotbridge.answers.score import score_output
from cotbridge.answers.thinking import join_thinking, split_thinking
from cotbridge.backends.base import Completion, Request
from cotbridge.curate import CurateSettings, curate
from cotbridge.inference.records import TeacherRecord
from cotbridge.inference.two_stage import TwoStageSample


def test_split_thinking_forms():
    t = split_thinking("<think>\nTry 5. No, 7.\n</think>\n\nThe answer is 7.")
    assert (t.thinking, t.response, t.complete) == ("Try 5. No, 7.", "The answer is 7.", True)
    r1 = split_thinking("Okay, 3 + 4 = 7.\n</think>\nThe answer is 7.")  # the template wrote <think> already
    assert (r1.thinking, r1.response) == ("Okay, 3 + 4 = 7.", "The answer is 7.")
    cut = split_thinking("<think>Let me count: 1, 2, 3")
    assert (cut.thinking, cut.response, cut.complete) == ("Let me count: 1, 2, 3", "", False)
    api = split_thinking("The answer is 7.", reasoning="3 + 4 = 7")
    assert (api.thinking, api.response) == ("3 + 4 = 7", "The answer is 7.")
    plain = split_thinking("3 + 4 = 7. The answer is 7.")
    assert plain.thinking is None and plain.response == "3 + 4 = 7. The answer is 7."


def test_answers_are_never_read_from_inside_the_thinking():
    text = "<think>Example: Q: 2+2? The answer is 4. Now ours: maybe \\boxed{5}? No.</think>\nThe answer is 7."
    v = score_output(text, ["7"], "number")
    assert v.prediction == "7" and v.correct and v.complete
    cut = score_output("<think>the answer is 7 so far and", ["7"], "number")
    assert cut.prediction is None and not cut.correct and not cut.complete and not cut.contains_answer


def test_a_choice_written_as_its_text_maps_to_its_letter():
    choices = {"A": "happy", "B": "sad", "C": "angry", "D": "tired", "E": "bored"}
    v = score_output(
        "They had nothing to do, so they felt \\boxed{bored}.", ["E"], "choice", letters="ABCDE", choices=choices
    )
    assert v.prediction == "E" and v.correct and v.rule == "choice_text"
    assert score_output("So the answer is: sad", ["B"], "choice", letters="ABCDE", choices=choices).correct
    assert score_output("\\boxed{excited}", ["E"], "choice", letters="ABCDE", choices=choices).prediction is None


def record(text: str, key: str = "1#0", correct: bool = True) -> dict:
    out = Completion(text, "stop", 10, 20)
    s = TwoStageSample(Request(prompt="Q: 3 + 4?"), out, out.text)
    v = score_output(out.text, ["7"], "number")
    fields = dict(
        key=key,
        task="t",
        split="train",
        example_id=key.split("#")[0],
        sample=0,
        question="3 + 4?",
        gold="7",
        teacher={"backend": "replay", "model": "r1"},
        mode="zero_shot_cot_single",
        temperature=0.6,
    )
    return TeacherRecord.from_sample(s, v, **fields).to_dict()


def test_teacher_records_keep_thinking_apart_and_curation_chooses_what_is_learnt():
    full = record("<think>3 + 4: count up from 3: 4, 5, 6, 7.</think>\nSo the answer is 7.", "1#0")
    cut = record("<think>3 + 4: count up from 3: 4, 5", "2#0")
    plain = record("3 + 4 = 7. The answer is 7.", "3#0")
    assert full["thinking"] == "3 + 4: count up from 3: 4, 5, 6, 7." and full["rationale"] == "So the answer is 7."
    assert full["thinking_complete"] and cut["thinking_complete"] is False and "thinking" not in plain
    records = [full, cut, plain]
    kept, stats = curate(records, CurateSettings(filters=["has_output"], rationale="both"))
    assert stats["dropped"] == {"incomplete_thinking": 1}  # a trace that never closed is never trained on
    assert kept[0]["rationale"] == join_thinking(full["thinking"], "So the answer is 7.")
    assert kept[1]["rationale"] == plain["rationale"]  # a record without a trace is learnt as it is
    kept, stats = curate(records, CurateSettings(filters=["has_output"], rationale="thinking"))
    assert [r["rationale"] for r in kept] == [full["thinking"]] and stats["dropped"]["no_thinking"] == 1
    kept, stats = curate(records, CurateSettings(filters=["has_output"], max_thinking_words=5))
    assert stats["dropped"]["thinking_length"] == 1 and kept[0]["rationale"] == plain["rationale"]
