"""How fine-tuned students read their input. A decoder-only student's prompt ends in `` ###`` (Fine-tune-CoT's
separator); an encoder-decoder student (T5) was trained on the question alone, so its encoder sees it without the
separator. Generation, training and the prompt modes all take the rule from here."""

from __future__ import annotations

STUDENT_SUFFIX = " ###"


def encoder_input(prompt: str) -> str:
    """The encoder text of an encoder-decoder student: ``{question} ###`` -> ``{question}``; other prompts
    unchanged."""
    return prompt.removesuffix(STUDENT_SUFFIX)
