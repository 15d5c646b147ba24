"""Run a backend on a task's examples in a prompt mode; score each sample; vote; aggregate.

Greedy decoding is k=1; self-consistency samples k outputs per question through one request
(``n=k``), extracts an answer from each and takes the majority vote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cotbridge.answers.score import Verdict, is_correct, score_output
from cotbridge.answers.squad import best_over_golds, normalize_answer
from cotbridge.backends.base import Backend, Request
from cotbridge.evaluation.metrics import majority_vote, mean_and_stderr, pass_at_k, pass_k_values
from cotbridge.inference.records import EvalRecord, EvalSample, prompt_of
from cotbridge.inference.two_stage import TwoStageSample, generate_two_stage
from cotbridge.prompts.modes import PROMPT_MODES, PromptContext, answer_request, first_request
from cotbridge.tasks.base import Example, Task, answer_choices, choice_letters

log = logging.getLogger(__name__)


@dataclass
class Decoding:
    k: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: the prompt mode's default
    answer_max_tokens: int | None = None
    stop: list[str] | None = None
    chat: bool = False
    seed: int = 0
    pipeline: str | None = None  # override the mode's extraction pipeline


def evaluate_examples(
    task: Task,
    examples: list[Example],
    backend: Backend,
    mode_name: str,
    ctx: PromptContext,
    dec: Decoding,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-example records and the task's metrics."""
    mode = PROMPT_MODES.get(mode_name)
    first = [
        first_request(
            ex,
            mode,
            ctx,
            n=dec.k,
            temperature=dec.temperature,
            top_p=dec.top_p,
            max_tokens=dec.max_tokens,
            stop=dec.stop,
            seed=dec.seed,
            chat=dec.chat,
        )
        for ex in examples
    ]
    ask_answer = None
    if mode.second is not None:

        def ask_answer(i: int, req: Request, rationale: str) -> Request:
            return answer_request(examples[i], req, rationale, mode, ctx, max_tokens=dec.answer_max_tokens)

    samples = generate_two_stage(backend, first, ask_answer, progress=progress)
    pipeline = dec.pipeline or mode.pipeline
    records = [score_example(task, ex, req, row, pipeline) for ex, req, row in zip(examples, first, samples)]
    return records, aggregate(task, records, dec.k)


def score_example(
    task: Task, ex: Example, req: Request, samples: list[TwoStageSample], pipeline: str
) -> dict[str, Any]:
    """The record of one question: each sample scored on its final output, then the vote."""
    scored = [
        EvalSample.from_sample(
            s,
            not_generated(task.answer_type)
            if s.skipped
            else score_output(
                s.final.text,
                ex.golds,
                task.answer_type,
                letters=choice_letters(task, ex),
                choices=answer_choices(task, ex),
                pipeline=pipeline,
                finish_reason=s.output.finish_reason,
            ),
        )
        for s in samples
    ]
    voted = vote(task, ex, [s.verdict.prediction for s in scored])
    reasons = [s.skipped for s in scored]
    return EvalRecord(
        id=ex.id,
        question=ex.question,
        gold=ex.answer,
        prompt=prompt_of(req),
        samples=scored,
        skipped=reasons[0] if reasons and all(reasons) else None,  # no sample at all: the question was not asked
        **voted,
    ).to_dict()


def not_generated(answer_type: str) -> Verdict:
    """The verdict of a sample that was not generated (its prompt does not fit the context window): no answer,
    wrong, incomplete."""
    verdict = Verdict(None, False, False, False, False, None)
    if answer_type == "span":
        verdict.em, verdict.f1 = 0.0, 0.0
    return verdict


def vote(task: Task, ex: Example, predictions: list[str | None]) -> dict[str, Any]:
    key = normalize_answer if task.answer_type == "span" else (lambda a: a.strip().lower())
    pred = majority_vote(predictions, key=key)
    out: dict[str, Any] = {"prediction": pred, "correct": is_correct(pred, ex.golds, task.answer_type)}
    if task.answer_type == "span":
        out["em"], out["f1"] = best_over_golds(pred or "", ex.golds)
    return out


def aggregate(task: Task, records: list[dict[str, Any]], k: int) -> dict[str, Any]:
    acc, se = mean_and_stderr([float(r["correct"]) for r in records])
    samples = [s for r in records for s in r["samples"]]
    rate = lambda key: sum(bool(s[key]) for s in samples) / max(1, len(samples))  # noqa: E731
    metrics: dict[str, Any] = {
        "n": len(records),
        "k": k,
        "accuracy": acc,
        "accuracy_stderr": se,
        "contains_answer": rate("contains_answer"),
        "correct_format": rate("correct_format"),
        "complete": rate("complete"),
        "invalid": sum(s["prediction"] is None for s in samples) / max(1, len(samples)),
    }
    skipped = skipped_summary(records)
    if skipped is not None:
        metrics["skipped"] = skipped
    if task.answer_type == "span":
        metrics["em"], metrics["em_stderr"] = mean_and_stderr([r["em"] for r in records])
        metrics["f1"], metrics["f1_stderr"] = mean_and_stderr([r["f1"] for r in records])
    if k > 1:
        metrics[f"maj@{k}"] = acc
        for kk in pass_k_values(k):
            metrics[f"pass@{kk}"] = sum(
                pass_at_k(k, sum(s["correct"] for s in r["samples"]), kk) for r in records
            ) / len(records)
    return metrics


def skipped_summary(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What was not generated because its prompt does not fit the model's context window (None: nothing). ``count``:
    questions not asked at all (they stay in every denominator, as wrong: accuracy is never inflated by leaving
    them out); ``samples``: samples not generated (a question's answer prompt can overflow for some samples only);
    ``reason``: the first one's; ``first_ids``: the first questions concerned."""
    hit = [r for r in records if any(s.get("skipped") for s in r["samples"])]
    if not hit:
        return None
    first = next(s["skipped"] for s in hit[0]["samples"] if s.get("skipped"))
    return {
        "count": sum(bool(r.get("skipped")) for r in records),
        "samples": sum(bool(s.get("skipped")) for r in hit for s in r["samples"]),
        "reason": first,
        "first_ids": [r["id"] for r in hit[:5]],
    }
