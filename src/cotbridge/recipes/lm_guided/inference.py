"""LM-guided chain-of-thought (Lee et al. 2024): a small model writes the rationale, a frozen large model answers.

One code path serves the paper's rows: standard prompting (no rationale), the large model's own CoT,
and guided rows whose rationales come from a small model (any backend), greedy (k=1) or with
self-consistency (k rationales, k answers, majority vote). The large model always answers through the
same request: zero-shot-CoT's stage 2 (``… Let's think step by step. {rationale}\\nTherefore, the answer
is``), so rows differ only in where the rationale comes from. The request builders are the ones
``teach`` uses, so the large model's own CoT on training questions (the distillation data) and the CoT
row share prompts and request-cache entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field

from cotbridge.backends.base import Backend, Completion, Request
from cotbridge.config import StrictModel
from cotbridge.evaluation.scoring import aggregate, score_example
from cotbridge.inference.two_stage import generate_answers, generate_two_stage
from cotbridge.prompts.formats import clean_rationale
from cotbridge.prompts.modes import (
    PROMPT_MODES,
    STUDENT_STOP,
    STUDENT_SUFFIX,
    PromptContext,
    answer_request,
    first_request,
    question_block,
)
from cotbridge.tasks.base import Example, Task

COT_MODE = "zero_shot_cot"
ANSWER_PIPELINE = "guided_answer"  # every large-model answer follows an answer trigger (see answers.extract)
# Small chat models often continue "Therefore, the answer is" with ":\n\n" before the answer, so the answer stage
# stops only where a new question would start; extraction takes the first non-empty line.
ANSWER_STOP = ["\nQ:", "\nQuestion:"]
RationaleSource = Literal["none", "large", "small"]


class ContextSpec(StrictModel):
    """Which context paragraphs the models see, and how much of each (multi-hop contexts are long)."""

    paragraphs: Literal["all", "supporting", "first"] = "all"  # supporting: the gold paragraphs only
    max_paragraphs: int | None = Field(default=None, ge=1)  # None: every paragraph
    max_paragraph_words: int | None = Field(default=None, ge=1)
    max_words: int | None = Field(default=None, ge=1)  # cap on the whole context, after the per-paragraph cap


def split_paragraphs(context: str) -> list[tuple[str, str]]:
    """``tasks.multihop.format_context`` output back into (title, text) pairs."""
    out = []
    for block in filter(None, (b.strip() for b in context.split("\n\n"))):
        title, sep, text = block.partition(": ")
        out.append((title, text) if sep else ("", block))
    return out


def _cap_words(text: str, n: int | None) -> str:
    words = text.split()
    return text if n is None or len(words) <= n else " ".join(words[:n]) + " …"


def trim_context(ex: Example, spec: ContextSpec) -> Example:
    """A copy of ``ex`` whose context follows ``spec`` (examples without context are returned as they are)."""
    if not ex.context:
        return ex
    paras = split_paragraphs(ex.context)
    if spec.paragraphs == "supporting":
        titles = set(ex.meta.get("supporting_titles") or [])
        chosen = [p for p in paras if p[0] in titles]
        paras = chosen or paras  # a record without supporting titles keeps its whole context
    if spec.max_paragraphs is not None:
        paras = paras[: spec.max_paragraphs]
    paras = [(t, _cap_words(x, spec.max_paragraph_words)) for t, x in paras]
    text = "\n\n".join(f"{t}: {x}" if t else x for t, x in paras)
    return replace(ex, context=_cap_words(text, spec.max_words) if spec.max_words else text)


# ---------------------------------------------------------------- requests


def small_prompt(ex: Example) -> str:
    """What the rationale writer sees: the student format's ``{context + question} ###``."""
    return f"{question_block(ex)}{STUDENT_SUFFIX}"


def small_request(
    ex: Example, *, n: int = 1, temperature: float = 0.0, max_tokens: int = 64, seed: int = 0
) -> Request:
    return Request(
        prompt=small_prompt(ex),
        n=n,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        stop=[STUDENT_STOP, "-->"],
        meta={"example": ex, "stage": "rationale"},
    )


@dataclass
class LargePrompts:
    """Builds the large model's requests for one task: standard, own CoT (stage 1) and answer-given-rationale."""

    task: Task
    chat: bool = True
    rationale_max_tokens: int = 64
    answer_max_tokens: int = 24

    def __post_init__(self) -> None:
        self.mode = PROMPT_MODES.get(COT_MODE)
        self.ctx = PromptContext(task=self.task)

    def cot(self, ex: Example, n: int = 1, temperature: float = 0.0, seed: int = 0) -> Request:
        return first_request(
            ex,
            self.mode,
            self.ctx,
            n=n,
            temperature=temperature,
            max_tokens=self.rationale_max_tokens,
            seed=seed,
            chat=self.chat,
        )

    def answer(self, ex: Example, rationale: str) -> Request:
        req = answer_request(ex, self.cot(ex), rationale, self.mode, self.ctx, max_tokens=self.answer_max_tokens)
        return replace(req, stop=list(ANSWER_STOP))

    def standard(self, ex: Example) -> Request:
        """Standard prompting: context and question, then 'The answer is' (Kojima's zero-shot baseline)."""
        trigger = self.ctx.trigger(ex).removeprefix("Therefore, ")
        trigger = trigger[0].upper() + trigger[1:]
        common = dict(
            max_tokens=self.answer_max_tokens, stop=list(ANSWER_STOP), meta={"example": ex, "stage": "single"}
        )
        if self.chat:
            return Request(
                messages=[
                    {"role": "user", "content": f"Q: {question_block(ex)}"},
                    {"role": "assistant", "content": trigger},
                ],
                continue_final=True,
                **common,
            )
        return Request(prompt=f"Q: {question_block(ex)}\nA: {trigger}", **common)


def rationale_text(completion: Completion) -> str:
    """The rationale a writer produced, cut where a student would start its answer (``-->``) or run on."""
    return clean_rationale(re.split(r"-->|\bEND\b", completion.text, maxsplit=1)[0])


# ---------------------------------------------------------------- rows


@dataclass
class RowSpec:
    """One row of the paper's table: where rationales come from, and how many per question (k>1: vote)."""

    name: str
    rationale: RationaleSource
    k: int = 1
    temperature: float = 0.0  # for rationale sampling; self-consistency needs > 0


def answer_given(
    large: Backend, prompts: LargePrompts, examples: list[Example], rationales: list[list[str]], progress: bool = True
) -> tuple[list[list[Request]], list[list[Completion]]]:
    """The large model's answer for every (example, rationale); identical calls are made once."""
    reqs = [[prompts.answer(ex, r) for r in rs] for ex, rs in zip(examples, rationales)]
    flat = iter(generate_answers(large, [r for rs in reqs for r in rs], dedupe=True, progress=progress))
    return reqs, [[next(flat) for _ in rs] for rs in reqs]


def run_row(
    task: Task,
    examples: list[Example],
    row: RowSpec,
    large: Backend,
    prompts: LargePrompts,
    small: Backend | None = None,
    small_max_tokens: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-question records (rationales, answers, vote, EM/F1) and the row's metrics."""
    if row.rationale == "none":
        reqs = [prompts.standard(ex) for ex in examples]
        samples = generate_two_stage(large, reqs, progress=progress)
        records = [score_example(task, ex, req, s, ANSWER_PIPELINE) for ex, req, s in zip(examples, reqs, samples)]
        return _tag(records, row), aggregate(task, records, 1)
    if row.rationale == "large":
        writer, clean = large, (lambda c: c.text.strip())
        reqs = [prompts.cot(ex, n=row.k, temperature=row.temperature, seed=seed) for ex in examples]
    else:
        if small is None:
            raise ValueError(f"row {row.name!r} needs a small rationale model")
        writer, clean = small, rationale_text
        reqs = [
            small_request(ex, n=row.k, temperature=row.temperature, max_tokens=small_max_tokens, seed=seed)
            for ex in examples
        ]
    samples = generate_two_stage(
        writer,
        reqs,
        lambda i, _req, rationale: prompts.answer(examples[i], rationale),
        answer_backend=large,
        clean_rationale=clean,
        dedupe_answers=True,
        progress=progress,
    )
    # A guided record's prompt is the large model's answer prompt (what the rationale was shown in).
    records = [score_example(task, ex, s[0].answer_request, s, ANSWER_PIPELINE) for ex, s in zip(examples, samples)]
    return _tag(records, row), aggregate(task, records, row.k)


def _tag(records: list[dict[str, Any]], row: RowSpec) -> list[dict[str, Any]]:
    for r in records:
        r["row"] = row.name
    return records


def rationale_items(records: list[dict[str, Any]], examples: list[Example]) -> list[dict[str, Any]]:
    """(question, context, rationale) items of a row's records, for rationale-quality scoring."""
    by_id = {ex.id: ex for ex in examples}
    items = []
    for rec in records:
        ex = by_id[rec["id"]]
        for j, s in enumerate(rec["samples"]):
            if "answer_output" in s:  # rows without a rationale have nothing to score
                items.append(
                    {
                        "key": f"{rec['row']}/{ex.id}#{j}",
                        "row": rec["row"],
                        "example_id": ex.id,
                        "sample": j,
                        "question": ex.question,
                        "context": ex.context or "",
                        "rationale": s["output"],
                        "em": s.get("em"),
                        "f1": s.get("f1"),
                    }
                )
    return items
