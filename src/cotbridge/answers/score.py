"""Per-sample verdicts: correct, contains_answer, correct_format, complete (+ EM/F1 for spans)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cotbridge.answers.extract import all_candidates, extract_answer
from cotbridge.answers.squad import best_over_golds
from cotbridge.answers.types import ANSWER_TYPES


@dataclass
class Verdict:
    prediction: str | None
    correct: bool
    contains_answer: bool  # some candidate anywhere in the output is right
    correct_format: bool  # the answer was found behind a marker (-->, \boxed{}, "the answer is")
    complete: bool  # generation stopped by itself, not by the length limit
    rule: str | None
    em: float | None = None
    f1: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "prediction"}


def is_correct(prediction: str | None, golds: list[str], answer_type: str) -> bool:
    if prediction is None:
        return False
    same = ANSWER_TYPES.get(answer_type).same
    return any(same(prediction, g) for g in golds)


def score_output(
    text: str | None,
    golds: list[str],
    answer_type: str,
    *,
    letters: str = "",
    pipeline: str = "default",
    finish_reason: str | None = "stop",
) -> Verdict:
    atype = ANSWER_TYPES.get(answer_type)
    ex = extract_answer(text, atype, letters, pipeline)
    correct = is_correct(ex.answer, golds, answer_type)
    contains = correct or any(is_correct(c, golds, answer_type) for c in all_candidates(text, atype, letters))
    verdict = Verdict(ex.answer, correct, contains, ex.formatted, finish_reason != "length", ex.rule)
    if answer_type == "span":
        verdict.em, verdict.f1 = best_over_golds(ex.answer or "", golds)
    return verdict
