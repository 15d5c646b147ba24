"""Kojima et al.'s answer-extraction triggers for stage 2 of zero-shot-CoT, by answer type."""

from __future__ import annotations

GENERIC_TRIGGER = "Therefore, the answer is"


def answer_trigger(answer_type: str, letters: str = "") -> str:
    if answer_type == "number":
        return "Therefore, the answer (arabic numerals) is"
    if answer_type == "choice":
        return f"Therefore, among {letters[0]} through {letters[-1]}, the answer is"
    if answer_type == "yesno":
        return "Therefore, the answer (Yes or No) is"
    return GENERIC_TRIGGER
