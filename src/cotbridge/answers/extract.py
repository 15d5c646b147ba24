"""Named answer-extraction pipelines: ordered rules, the first rule that finds an answer wins.

A rule picks a *segment* of the output (after ``-->``, inside ``\\boxed{}``, after "the answer
is") and which candidate in it to take (first or last). Marker rules count as "correct format".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cotbridge.answers.types import AnswerType
from cotbridge.registry import Registry

SEPARATOR = "-->"
ANSWER_IS_RE = re.compile(
    r"(?:the\s+)?(?:final\s+|correct\s+|best\s+)?answer(?:\s*\([^)]*\))?\s*(?:is|:|would\s+be|should\s+be)\s*:?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Extraction:
    answer: str | None  # None: nothing parseable (excluded from self-consistency votes)
    rule: str | None  # which rule fired
    formatted: bool  # a marker rule fired (separator, boxed, "the answer is")


# A rule returns the segment to search and whether to take its first (True) or last candidate,
# or None when it does not apply to this text.
Rule = Callable[[str], "tuple[str, bool] | None"]
RULES: Registry[Rule] = Registry("extraction rule")
MARKER_RULES = {"separator", "boxed", "answer_is"}


@RULES.register("separator")
def _after_separator(text: str) -> tuple[str, bool] | None:
    if SEPARATOR not in text:
        return None
    return text.split(SEPARATOR, 1)[1], True


@RULES.register("boxed")
def _last_boxed(text: str) -> tuple[str, bool] | None:
    contents = boxed_contents(text)
    return (contents[-1], True) if contents else None


@RULES.register("answer_is")
def _after_answer_is(text: str) -> tuple[str, bool] | None:
    matches = list(ANSWER_IS_RE.finditer(text))
    return (text[matches[-1].end() :], True) if matches else None


@RULES.register("first")
def _first(text: str) -> tuple[str, bool] | None:
    return text, True


@RULES.register("last")
def _last(text: str) -> tuple[str, bool] | None:
    return text, False


PIPELINES: Registry[tuple[str, ...]] = Registry("extraction pipeline")
PIPELINES.add("default", ("boxed", "separator", "answer_is", "last"))
# Fine-tune-CoT (Ho et al.): after "-->" take the first candidate, otherwise the last in the text.
PIPELINES.add("finetune_cot", ("separator", "last"))
# Stage 2 of two-stage zero-shot-CoT: the completion after "Therefore, the answer is".
PIPELINES.add("answer_stage", ("boxed", "first"))
# Pipelines whose prompt already ends in the answer trigger: any answer found is in format.
PROMPTED_ANSWER_PIPELINES = {"answer_stage"}
# lm-evaluation-harness gsm8k_cot_zeroshot: "The answer is N" (strict), else the last number.
PIPELINES.add("lmeval", ("answer_is", "last"))

# Small answerers restate the trigger ("…the answer is:\n\nThe answer is: Cork") or open with "A:"; the answer is
# the first line after such a marker. LM-guided CoT's rows and its KD teacher score every large-model answer with it.
LEAD_MARKER = re.compile(r"^(?:(?:so,?\s+)?(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*:|a:)\s*", re.I)


@RULES.register("first_after_marker")
def _first_after_marker(text: str) -> tuple[str, bool]:
    stripped = text.lstrip(" \t\n:")
    m = LEAD_MARKER.match(stripped)
    return (stripped[m.end() :] if m else stripped), True


PIPELINES.add("guided_answer", ("boxed", "first_after_marker"))
PROMPTED_ANSWER_PIPELINES.add("guided_answer")


def extract_answer(
    text: str | None, answer_type: AnswerType, letters: str = "", pipeline: str = "default"
) -> Extraction:
    if not text:
        return Extraction(None, None, False)
    for rule_name in PIPELINES.get(pipeline):
        found = RULES.get(rule_name)(text)
        if found is None:
            continue
        segment, take_first = found
        take_first = take_first or (rule_name == "last" and answer_type.fallback_first)
        cands = answer_type.candidates(segment if answer_type.raw_latex else _strip_latex(segment), letters)
        if cands:
            formatted = rule_name in MARKER_RULES or pipeline in PROMPTED_ANSWER_PIPELINES
            return Extraction(cands[0] if take_first else cands[-1], rule_name, formatted)
    return Extraction(None, None, False)


def all_candidates(text: str | None, answer_type: AnswerType, letters: str = "") -> list[str]:
    if not text:
        return []
    return answer_type.candidates(text if answer_type.raw_latex else _strip_latex(text), letters)


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}``, braces balanced."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _strip_latex(text: str) -> str:
    # \text{city} → city, \frac{a}{b} → a/b, \$ → $, so candidates see plain words and numbers.
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    return text.replace("\\$", "$").replace("\\%", "%").replace("\\,", "").replace("\\!", "")
