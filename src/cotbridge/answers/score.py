"""Per-sample verdicts: correct, contains_answer, correct_format, complete (+ EM/F1 for spans)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cotbridge.answers.extract import ANSWER_IS_RE, Extraction, all_candidates, boxed_contents, extract_answer
from cotbridge.answers.squad import best_over_golds, normalize_answer
from cotbridge.answers.thinking import split_thinking
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
    choices: dict[str, str] | None = None,
) -> Verdict:
    """``choices``: letter -> option text of a multiple-choice question; an answer written as an option's text
    (``\\boxed{bored}`` when option E is "bored") counts as that option's letter."""
    atype = ANSWER_TYPES.get(answer_type)
    trace = split_thinking(text)
    text = trace.response  # never read an answer from inside the thinking (empty when the trace never closed)
    ex = extract_answer(text, atype, letters, pipeline)
    if choices and ex.rule in (None, "last"):  # no marked letter: a marked option text wins over a stray letter
        letter = choice_by_text(text, choices)
        if letter is not None:
            ex = Extraction(letter, "choice_text", True)
    correct = is_correct(ex.answer, golds, answer_type)
    contains = correct or any(is_correct(c, golds, answer_type) for c in all_candidates(text, atype, letters))
    verdict = Verdict(
        ex.answer, correct, contains, ex.formatted, finish_reason != "length" and trace.complete, ex.rule
    )
    if answer_type == "span":
        verdict.em, verdict.f1 = best_over_golds(ex.answer or "", golds)
    return verdict


def choice_by_text(text: str, choices: dict[str, str]) -> str | None:
    """The letter of the option whose text the answer states: in ``\\boxed{}`` (last first), after "the answer is",
    or alone on the last line."""
    by_text = {normalize_answer(t): letter for letter, t in choices.items() if normalize_answer(t)}
    segments = list(reversed(boxed_contents(text)))
    m = ANSWER_IS_RE.search(text)
    if m:
        segments.append(text[m.end() :].split("\n")[0])
    lines = [line for line in text.strip().splitlines() if line.strip()]
    segments += lines[-1:]
    for seg in segments:
        letter = by_text.get(normalize_answer(seg))
        if letter is not None:
            return letter
    return None
