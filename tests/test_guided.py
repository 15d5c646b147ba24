"""LM-guided inference with scripted small and large models: rows, prompts, the self-consistency vote, contexts."""

from __future__ import annotations

import pytest

from cotbridge.recipes.lm_guided.inference import (
    ContextSpec,
    LargePrompts,
    RowSpec,
    rationale_items,
    run_row,
    small_prompt,
    trim_context,
)
from cotbridge.tasks import get_task
from cotbridge.tasks.base import Example

TASK = get_task("hotpotqa")
CONTEXT = (
    "Ada Lovelace: Ada Lovelace was an English mathematician born in London in 1815.\n\n"
    "Paris: Paris is the capital of France.\n\n"
    "Charles Babbage: Charles Babbage designed the Analytical Engine with Ada Lovelace."
)
EX = Example(
    id="q1",
    question="Where was the collaborator of Babbage born?",
    answer="London",
    aliases=["London, England"],
    context=CONTEXT,
    meta={"supporting_titles": ["Charles Babbage", "Ada Lovelace"]},
)
EX2 = Example(
    id="q2",
    question="What is the capital of France?",
    answer="Paris",
    context="Paris: Paris is the capital of France.",
)


def large_reads_rationale(scripted):
    """A large model whose answer is the last word of the rationale it was given (or 'Rome' without one)."""

    def respond(text, req):
        rationale = req.meta.get("rationale")
        return [f" {rationale.split()[-1].strip('.')}." if rationale else " Rome."]

    return scripted(respond)


def test_guided_row_sends_each_small_rationale_to_the_large_model(scripted):
    small = scripted(lambda text, req: ["Ada was born in London. --> London"] * req.n)
    large = large_reads_rationale(scripted)
    records, metrics = run_row(TASK, [EX], RowSpec("kd", "small"), large, LargePrompts(TASK), small)
    # the small model saw context + question in the student format, and its answer part was cut off
    assert small.requests[0].prompt == small_prompt(EX) and small.requests[0].prompt.endswith("born? ###")
    sent = large.requests[0].messages
    assert sent[0]["content"].startswith("Q: Ada Lovelace:") and "Let's think step by step." in sent[0]["content"]
    assert sent[1] == {"role": "assistant", "content": "Ada was born in London.\nTherefore, the answer is"}
    assert records[0]["samples"][0]["output"] == "Ada was born in London."
    assert records[0]["prediction"] == "London" and metrics["em"] == metrics["f1"] == 1.0 and metrics["n"] == 1


def test_self_consistency_votes_over_k_answers(scripted):
    rationales = iter(["so it is London.", "so it is Paris.", "so it is london"])
    small = scripted(lambda text, req: [next(rationales) for _ in range(req.n)])
    large = large_reads_rationale(scripted)
    records, metrics = run_row(
        TASK, [EX], RowSpec("kd_sc", "small", k=3, temperature=0.7), large, LargePrompts(TASK), small
    )
    assert small.requests[0].n == 3 and small.requests[0].temperature == 0.7
    assert len(large.requests) == 3  # one answer per rationale
    assert [s["prediction"] for s in records[0]["samples"]] == ["London", "Paris", "london"]
    assert records[0]["prediction"] == "London" and records[0]["em"] == 1.0  # 2 of 3 after normalisation
    assert metrics["maj@3"] == 1.0 and metrics["pass@1"] == pytest.approx(2 / 3)


def test_identical_rationales_are_answered_once(scripted):
    small = scripted(lambda text, req: ["so it is London."] * req.n)
    large = large_reads_rationale(scripted)
    run_row(TASK, [EX], RowSpec("kd_sc", "small", k=4, temperature=0.7), large, LargePrompts(TASK), small)
    assert len(large.requests) == 1


def test_baselines_standard_and_large_cot(scripted):
    large = scripted(
        lambda text, req: [
            {"single": " Paris.", "rationale": "The capital is Paris.", "answer": " Paris"}[req.meta["stage"]]
        ]
    )
    recs, m = run_row(TASK, [EX2], RowSpec("standard", "none"), large, LargePrompts(TASK))
    assert (
        large.requests[0].messages[-1] == {"role": "assistant", "content": "The answer is"}
        and large.requests[0].continue_final
    )
    assert m["em"] == 1.0 and "answer_output" not in recs[0]["samples"][0]
    large.requests.clear()
    recs, m = run_row(TASK, [EX2], RowSpec("cot", "large"), large, LargePrompts(TASK))
    assert [r.meta["stage"] for r in large.requests] == ["rationale", "answer"]  # own rationale, then the answer stage
    assert recs[0]["samples"][0]["output"] == "The capital is Paris." and m["em"] == 1.0
    items = rationale_items(recs, [EX2])
    assert items[0]["rationale"] == "The capital is Paris." and items[0]["key"] == "cot/q2#0"


def test_plain_prompts_without_chat(scripted):
    large = scripted(lambda text, req: [" London"])
    run_row(TASK, [EX], RowSpec("standard", "none"), large, LargePrompts(TASK, chat=False))
    assert large.requests[0].prompt.endswith("born?\nA: The answer is")


def test_row_needs_a_small_model(scripted):
    with pytest.raises(ValueError, match="small rationale model"):
        run_row(TASK, [EX], RowSpec("kd", "small"), scripted(lambda t, r: ["x"]), LargePrompts(TASK))


def test_trim_context_keeps_supporting_paragraphs_and_caps_words():
    ex = trim_context(EX, ContextSpec(paragraphs="supporting", max_paragraph_words=5))
    assert ex.context == (
        "Ada Lovelace: Ada Lovelace was an English …\n\nCharles Babbage: Charles Babbage designed the Analytical …"
    )
    assert EX.context == CONTEXT  # the original is untouched
    first = trim_context(EX, ContextSpec(paragraphs="first", max_paragraphs=1))
    assert first.context.startswith("Ada Lovelace:") and "Paris" not in first.context
    capped = trim_context(EX, ContextSpec(max_words=4))
    assert capped.context == "Ada Lovelace: Ada Lovelace …"
    # no supporting titles: the whole context stays
    assert trim_context(EX2, ContextSpec(paragraphs="supporting")).context == EX2.context


def test_answer_after_a_colon_and_blank_line_is_read(scripted):
    # SmolLM2 often writes "Therefore, the answer is:\n\nLondon"; a blank line must not end the answer stage.
    small = scripted(lambda text, req: ["Ada was born in London."])
    large = scripted(lambda text, req: [":\n\n**London**"])
    records, metrics = run_row(TASK, [EX], RowSpec("kd", "small"), large, LargePrompts(TASK), small)
    assert "\n\n" not in large.requests[0].stop and metrics["em"] == 1.0


@pytest.mark.parametrize(
    "answer, prediction",
    [
        (":\n\nThe answer is: Tanjuska And The 7 Devils", "Tanjuska And The 7 Devils"),
        (": 21.", "21"),
        (":\n\nA: Kansas Song is a fight song", "Kansas Song is a fight song"),
        (" Paris.\n\nSo, the answer is: Rome", "Paris"),
        ("\\boxed{Cork}", "Cork"),
        ("**Lee Hazlewood**.", "**Lee Hazlewood**"),
    ],
)
def test_answer_stage_extraction(answer, prediction):
    from cotbridge.answers.score import score_output
    from cotbridge.recipes.lm_guided.inference import ANSWER_PIPELINE

    v = score_output(answer, ["x"], "span", pipeline=ANSWER_PIPELINE)
    assert v.prediction == prediction and v.correct_format
