"""Answer extraction and verdicts, on snippets of real teacher outputs (shared/data/teacher_rationales)."""

from __future__ import annotations

import pytest

from cotbridge.answers import score_output
from cotbridge.answers.squad import exact_match, token_f1

# (output, gold, answer type, pipeline, expected prediction, expected correct)
REAL_OUTPUTS = [
    # gpt-4o-mini, SVAMP (LaTeX boxed inside \( \))
    (
        "3. Therefore, the total number of girls in the school now is:\n   \\[\n   \\boxed{1414}\n   \\]",
        "1414.0",
        "number",
        "default",
        "1414",
        True,
    ),
    # gpt-3.5-turbo, GSM8K: thousands separators must not split the number
    (
        "Profit = $200,000 - $130,000 Profit = $70,000  Therefore, Josh made a profit of $70,000.",
        "70000",
        "number",
        "default",
        "70000",
        True,
    ),
    # gpt-3.5-turbo, GSM8K: negative boxed answer
    (
        "-30 / 3 = -10.  Therefore, the average highest temperature of these 3 countries is "
        "\\boxed{-10} degrees Fahrenheit.",
        "-10",
        "number",
        "default",
        "-10",
        True,
    ),
    # text-davinci-003, GSM8K
    (
        " In 4 weeks, she will eat 3 eggs per day for 28 days, which is a total of 84 eggs. "
        "To convert this to dozens, divide 84 by 12, which gives us 7. "
        "Therefore, Claire will eat \\boxed{7} dozens of eggs in 4 weeks.",
        "7",
        "number",
        "default",
        "7",
        True,
    ),
    # gpt-3.5-turbo, GSM8K: a wrong final answer stays wrong even though the gold appears earlier
    (
        "the cost of supplies is $10.00. Therefore, his net profit is $40.00 - $10.00 = $30.00.  "
        "So, Charlie's net profit if he makes and sells 20 candles is $30.00.",
        "20",
        "number",
        "default",
        "30.00",
        False,
    ),
    # gpt-3.5-turbo, CommonsenseQA: \text{} inside \boxed{}, and the article "A" must not count
    (
        "A police officer is likely to work for a city. So the correct answer is \\boxed{(C) \\text{city}}.",
        "C",
        "choice",
        "default",
        "C",
        True,
    ),
    ("\\boxed{(C) city}", "C", "choice", "default", "C", True),
    # PaLM, CommonsenseQA (distilling-step-by-step release, run-on text already cut): lower-case marked letters
    (
        "The answer must be the place where beavers get their supplies. "
        "Of the above choices, only wooded areas have the supplies that beavers need. "
        "So the answer is (c) wooded area.",
        "C",
        "choice",
        "default",
        "C",
        True,
    ),
    (
        "The answer must be the place where the opera house is. Of the above choices, only downtown makes sense. "
        "So the answer is (a) go downtown.",
        "B",
        "choice",
        "default",
        "A",
        False,
    ),
    # PaLM, SVAMP: the answer is an expression, worth its value
    (
        "They put 10 seeds in each flower bed. There are 45 flower beds. So they planted 10 * 45 seeds. "
        "10 * 45 is 450. The answer is (10 * 45).",
        "450",
        "number",
        "default",
        "450",
        True,
    ),
    (
        "If he received a total of 10 emails in the day, then he received 10 - (3 + 6) = 1 emails in the evening. "
        "The answer is (10 - (3 + 6)).",
        "1",
        "number",
        "default",
        "1",
        True,
    ),
    # Fine-tune-CoT student format
    (" 12 apples - 5 eaten = 7 left --> 7", "7", "number", "finetune_cot", "7", True),
    (" 12 apples - 5 eaten = 7 left --> 8 END", "7", "number", "finetune_cot", "8", False),
    (" 12 apples - 5 eaten = 7 left", "7", "number", "finetune_cot", "7", True),  # no separator: last number
    # two-stage zero-shot-CoT answer stage: first candidate
    (" 18. She sells 9 eggs for 2 dollars.", "18", "number", "answer_stage", "18", True),
    # yes/no and strings
    (
        "Whitney flips, Benito flips: two flips, so it is heads up again. So the answer is yes.",
        "yes",
        "yesno",
        "default",
        "yes",
        True,
    ),
    (
        "Is it heads up? The coin was flipped once. Therefore, the answer (Yes or No) is No.",
        "no",
        "yesno",
        "default",
        "no",
        True,
    ),
    (
        'The last letter of "Whitney" is "y"... Concatenating them is "yajo". So the answer is "yajo".',
        "yajo",
        "string",
        "default",
        "yajo",
        True,
    ),
    # multiple-choice letter range: F is out of range for a three-way task
    ("So the answer is (F).", "A", "choice", "default", None, False),
    # decimals within tolerance
    ("The answer is 2.50", "2.5", "number", "default", "2.50", True),
]


@pytest.mark.parametrize("text,gold,atype,pipeline,pred,correct", REAL_OUTPUTS)
def test_real_outputs(text, gold, atype, pipeline, pred, correct):
    letters = "ABC" if "(F)" in text else "ABCDE"
    v = score_output(text, [gold], atype, letters=letters, pipeline=pipeline)
    assert v.prediction == pred
    assert v.correct is correct


def test_diagnostics_separate_format_from_correctness():
    wrong_but_contains = score_output(" 3 + 4 = 7, minus 2 is 5 --> 6", ["7"], "number", pipeline="finetune_cot")
    assert (wrong_but_contains.correct, wrong_but_contains.contains_answer, wrong_but_contains.correct_format) == (
        False,
        True,
        True,
    )
    unformatted = score_output(" 3 + 4 = 7", ["7"], "number", pipeline="finetune_cot", finish_reason="length")
    assert (unformatted.correct, unformatted.correct_format, unformatted.complete) == (True, False, False)
    nothing = score_output("", ["7"], "number")
    assert nothing.prediction is None and not nothing.correct


def test_bare_lower_case_letters_are_not_choices():
    assert score_output("So the answer is b.", ["B"], "choice").prediction is None
    assert score_output("So the answer is (b).", ["B"], "choice").prediction == "B"
    assert score_output("Between (A) and (D), the answer is D)", ["D"], "choice").prediction == "D"


@pytest.mark.parametrize(
    "pred,gold,em,f1",
    [
        ("the Chief of Protocol", "Chief of Protocol", 1.0, 1.0),
        ("Chief of Protocol of the United States", "Chief of Protocol", 0.0, 2 * (3 / 6) * 1 / (3 / 6 + 1)),
        ("yes", "no", 0.0, 0.0),
        ("Paris, France.", "paris france", 1.0, 1.0),
    ],
)
def test_squad_em_f1(pred, gold, em, f1):
    assert float(exact_match(pred, gold)) == em
    assert token_f1(pred, gold) == pytest.approx(f1)


def test_span_takes_answer_marker_then_first_line():
    v = score_output("Answer: Chief of Protocol.\nShe was an actress.", ["Chief of Protocol"], "span")
    assert v.prediction == "Chief of Protocol" and v.em == 1.0
    v = score_output("Chief of Protocol\nbecause she served", ["Chief of Protocol"], "span")
    assert v.em == 1.0 and v.f1 == 1.0


def test_answer_stage_output_counts_as_formatted():
    assert score_output(" 18.", ["18"], "number", pipeline="answer_stage").correct_format
    assert not score_output(" nothing", ["18"], "number", pipeline="answer_stage").correct_format
