"""Typed records: what evaluation writes per question and what teaching writes per (question, sample).

Their JSON shape is the on-disk format of ``eval/<task>.jsonl`` and ``teacher/<task>.jsonl``; the dataclasses are the
one place that shape is defined, so evaluation, teaching and LM-guided inference cannot drift apart.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cotbridge.answers.score import Verdict
from cotbridge.answers.thinking import split_thinking
from cotbridge.backends.base import CONTEXT_OVERFLOW, Completion, Request
from cotbridge.inference.two_stage import TwoStageSample


def prompt_of(req: Request | None) -> str | list[dict[str, str]] | None:
    """What a record keeps of a request: its text prompt or its chat messages."""
    return None if req is None else (req.prompt or req.messages)


@dataclass
class EvalSample:
    """One sampled output of an evaluated question, with its verdict."""

    output: str
    finish_reason: str
    usage: dict[str, int]
    verdict: Verdict
    answer_output: str | None = None
    skipped: str | None = None  # why it was not generated (a prompt longer than the model's context window)

    @classmethod
    def from_sample(cls, s: TwoStageSample, verdict: Verdict) -> EvalSample:
        out = s.output
        return cls(
            output=s.rationale,
            finish_reason=out.finish_reason,
            usage={"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
            verdict=verdict,
            answer_output=s.answer.text if s.answer is not None else None,
            skipped=s.skipped,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"output": self.output, "finish_reason": self.finish_reason, "usage": self.usage}
        if self.answer_output is not None:
            d["answer_output"] = self.answer_output
        if self.skipped is not None:
            d["skipped"] = self.skipped
        return {**d, **self.verdict.to_dict()}


@dataclass
class EvalRecord:
    """One evaluated question: its samples and the vote over them."""

    id: str
    question: str
    gold: str
    prompt: str | list[dict[str, str]] | None
    samples: list[EvalSample]
    prediction: str | None
    correct: bool
    em: float | None = None
    f1: float | None = None
    skipped: str | None = None  # no sample was generated, and why: the question counts as wrong

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "gold": self.gold,
            "prompt": self.prompt,
            "samples": [s.to_dict() for s in self.samples],
            "prediction": self.prediction,
            "correct": self.correct,
        }
        if self.em is not None:
            d["em"], d["f1"] = self.em, self.f1
        if self.skipped is not None:
            d["skipped"] = self.skipped
        return d


@dataclass
class TeacherRecord:
    """One (question, sample) a teacher answered: prompts, outputs, verdict, usage and cost."""

    key: str
    task: str
    split: str
    example_id: str
    sample: int
    question: str
    gold: str
    teacher: dict[str, Any]  # {"backend", "model"}
    mode: str
    temperature: float
    prompts: dict[str, Any]  # {"rationale", "answer"}
    rationale: str
    answer_output: str | None
    finish_reason: dict[str, str | None]  # {"rationale", "answer"}
    verdict: Verdict
    usage: dict[str, int]
    cost_usd: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=lambda: round(time.time(), 3))
    thinking: str | None = None  # a reasoning model's trace, kept apart from the final response (``rationale``)
    thinking_complete: bool | None = None  # False: the think block never closed (the output was cut short)

    @classmethod
    def from_sample(cls, s: TwoStageSample, verdict: Verdict, **fields: Any) -> TeacherRecord:
        """``fields``: key, task, split, example_id, sample, question, gold, teacher, mode, temperature."""
        parts: list[Completion] = [c for c in (s.output, s.answer) if c is not None]
        usage = {
            "prompt_tokens": sum(c.prompt_tokens for c in parts),
            "completion_tokens": sum(c.completion_tokens for c in parts),
        }
        cost = sum(c.extra.get("cost_usd") or 0.0 for c in parts)
        trace = split_thinking(s.output.text, s.output.extra.get("reasoning"))
        return cls(
            prompts={"rationale": prompt_of(s.request), "answer": prompt_of(s.answer_request)},
            rationale=trace.response.strip() if trace.thinking is not None else s.output.text.strip(),
            thinking=trace.thinking,
            thinking_complete=trace.complete if trace.thinking is not None else None,
            answer_output=s.answer.text if s.answer is not None else None,
            finish_reason={
                "rationale": s.output.finish_reason,
                "answer": s.answer.finish_reason if s.answer is not None else None,
            },
            verdict=verdict,
            usage=usage,
            cost_usd=cost or None,
            extra={
                **{k: v for k, v in s.output.extra.items() if k not in ("cost_usd", "reasoning")},
                **({"skipped": s.skipped} if s.skipped else {}),  # not generated: curation never trains on it
            },
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        thinking = {k: d.pop(k) for k in ("thinking", "thinking_complete")}
        v = d.pop("verdict")
        created = d.pop("created")
        usage, cost, extra = d.pop("usage"), d.pop("cost_usd"), d.pop("extra")
        d.update({k: v[k] for k in ("prediction", "correct", "contains_answer", "correct_format", "complete", "rule")})
        out = {**d, "usage": usage, "cost_usd": cost, "extra": extra, "created": created}
        return {**out, **thinking} if thinking["thinking"] is not None else out


def teacher_record_skipped(rec: dict[str, Any]) -> str | None:
    """Why a teacher record (its JSON) holds no generated sample: its prompt, or its answer's, did not fit the
    teacher's context window. None: it was generated."""
    reason = (rec.get("extra") or {}).get("skipped")
    finish = rec.get("finish_reason") or {}
    if reason is None and isinstance(finish, dict) and CONTEXT_OVERFLOW in finish.values():
        reason = "the prompt does not fit the teacher's context window"
    return str(reason) if reason else None
