"""Reasoning traces: a reasoning model's output holds its thinking (``<think>…</think>``, or the API's separate
``reasoning_content``) before the final response. The two are kept apart, and answers are read from the final
response only: a few-shot exemplar recited, or a candidate tried and dropped, inside the thinking is never the
answer. An unclosed think block means the output was cut short: its trace is incomplete and has no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"
_OPEN_RE = re.compile(r"^\s*<think>\s*", re.I)


@dataclass(frozen=True)
class Trace:
    thinking: str | None  # None: the output had no reasoning trace
    response: str  # the final response, where the answer is read
    complete: bool  # False: the think block never closed (cut short), so there is no final response


def split_thinking(text: str | None, reasoning: str | None = None) -> Trace:
    """Split an output into its thinking and final response.

    ``reasoning``: the API's separate reasoning text (``reasoning_content``), when the server split it already.
    DeepSeek-R1 distills often start inside the block (their chat template wrote ``<think>``), so a ``</think>``
    without an opening tag still ends the thinking."""
    text = text or ""
    if reasoning:
        return Trace(reasoning.strip(), text.strip(), True)
    lower = text.lower()
    close = lower.rfind(CLOSE)
    if close >= 0:
        thinking = _OPEN_RE.sub("", text[:close], count=1).strip()
        return Trace(thinking, text[close + len(CLOSE) :].strip(), True)
    opened = lower.find(OPEN)
    if opened >= 0:
        return Trace(text[opened + len(OPEN) :].strip(), "", False)
    return Trace(None, text, True)


def join_thinking(thinking: str, response: str) -> str:
    """The text a student that keeps ``<think>`` learns: the trace in its tags, then the final response."""
    return f"{OPEN}\n{thinking.strip()}\n{CLOSE}\n\n{response.strip()}"
