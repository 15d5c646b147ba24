"""The built-in reasoner for the synthetic tasks: exact rationales in several phrasings, free and offline.

Deterministic per (seed, example, sample index). With ``error_rate`` > 0 a sample makes one wrong
step that propagates to its final answer, and says so in ``extra`` — known ground truth for filters.
"""

from __future__ import annotations

import random
from typing import Any

from cotbridge.answers.extract import extract_answer
from cotbridge.answers.types import ANSWER_TYPES
from cotbridge.backends.base import BACKENDS, Completion, Request, ResultCallback
from cotbridge.errors import UserError
from cotbridge.tasks import Example, get_task
from cotbridge.tasks.synthetic import N_PHRASINGS, RENDERERS, STEP_COUNTS
from cotbridge.tasks.synthetic.common import pick_step


class ReferenceBackend:
    kind = "reference"
    cacheable = False  # worth a cache entry: costs money or minutes to make again

    def __init__(self, model: str = "reference", *, error_rate: float = 0.0, seed: int = 0, **_: Any):
        if not 0.0 <= error_rate <= 1.0:
            raise UserError(f"reference teacher: error_rate must be in [0, 1], got {error_rate}")
        self.model_id = model if error_rate == 0 else f"{model}(error_rate={error_rate})"
        self.error_rate, self.seed = error_rate, seed

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for i, req in enumerate(requests):
            comps = [self._sample(req, req.first_sample + j) for j in range(req.n)]
            out.append(comps)
            if on_result is not None:
                on_result(i, comps)
        return out

    def _sample(self, req: Request, sample: int) -> Completion:
        task_name, example = req.meta.get("task"), req.meta.get("example")
        if task_name not in RENDERERS or not isinstance(example, Example):
            raise UserError(
                f"the reference teacher only knows the synthetic tasks ({', '.join(RENDERERS)}), not {task_name!r}"
            )
        if req.meta.get("stage") == "answer":
            # Stage 2 of zero-shot-CoT reads the answer off the rationale it is given, right or wrong.
            stated = stated_answer(task_name, example, req.meta["rationale"])
            return Completion(f" {stated}.", "stop", prompt_tokens=_words(req), completion_tokens=2)
        rng = random.Random(f"{self.seed}:{task_name}:{example.id}:{sample}")
        # Greedy (T=0) asks for the canonical phrasing; sampling varies it, as a real teacher would.
        phrasing = rng.randrange(N_PHRASINGS[task_name]) if req.temperature > 0 else 0
        error_step = rng.randrange(10**6) if rng.random() < self.error_rate else None
        rationale = RENDERERS[task_name](example, phrasing, error_step=error_step, rng=rng)
        stated = stated_answer(task_name, example, rationale)
        text = (
            f" {rationale}"
            if req.meta.get("stage") == "rationale"
            else f" {rationale} Therefore, the answer is {stated}."
        )
        return Completion(
            text,
            "stop",
            prompt_tokens=_words(req),
            completion_tokens=len(text.split()),
            # the 0-based index of the step made wrong (None: every step right)
            extra={
                "phrasing": phrasing,
                "error_step": pick_step(error_step, STEP_COUNTS[task_name](example)),
                "stated_answer": stated,
            },
        )


def stated_answer(task_name: str, example: Example, rationale: str) -> str:
    """The result the rationale's last step states (wrong if a step was wrong)."""
    task = get_task(task_name)
    letters = example.meta.get("choice_letters") or task.choice_letters
    found = extract_answer(rationale, ANSWER_TYPES.get(task.answer_type), letters, pipeline="default").answer
    if found is None:
        raise RuntimeError(f"reference rationale for {example.id} states no answer: {rationale!r}")
    return found


def _words(req: Request) -> int:
    return len((req.prompt or " ".join(m["content"] for m in req.messages or [])).split())


BACKENDS.add("reference", ReferenceBackend)
