"""The one rationale -> answer routine used by evaluation, teaching and LM-guided inference.

Stage 1 asks for a rationale (``n`` samples per request); stage 2, when the caller gives an answer-request builder,
asks for the answer given each rationale (Kojima's "Therefore, the answer is ..."). Stage 2 may run on another
backend (LM-guided CoT: a small model writes, a large one answers) and may ask identical answer calls once.
Callers differ only in the arguments they pass: nothing is patched after construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from cotbridge.backends.base import Backend, Completion, Request, skipped_reason

# (index of the stage-1 request, the stage-1 request, the rationale) -> the stage-2 request
AnswerRequestBuilder = Callable[[int, Request, str], Request]


@dataclass
class TwoStageSample:
    """One sample: its rationale completion and, for two-stage prompts, the answer request and completion."""

    request: Request  # the stage-1 request this sample came from
    output: Completion  # stage 1 (for single-stage prompts: the whole output)
    rationale: str  # the text stage 2 was given (``output.text`` unless the caller cleans it)
    answer_request: Request | None = None
    answer: Completion | None = None

    @property
    def final(self) -> Completion:
        """The completion the answer is read from."""
        return self.answer if self.answer is not None else self.output

    @property
    def skipped(self) -> str | None:
        """Why this sample was not generated (a prompt, of stage 1 or of stage 2, that does not fit the model's
        context window), or None."""
        return skipped_reason(self.output) or (
            f"answer {skipped_reason(self.answer)}" if skipped_reason(self.answer) else None
        )


def sampling_temperature(temperature: float | None, samples: int) -> float:
    """The temperature asked for, else 0 (greedy) for one sample and 0.7 for several (self-consistency, diverse
    reasoning: Wang et al. 2023 and Ho et al. 2023 both sample at 0.7)."""
    if temperature is not None:
        return temperature
    return 0.7 if samples > 1 else 0.0


def request_identity(r: Request) -> str:
    """What makes two requests the same call (for asking identical answer calls once)."""
    return repr((r.prompt, r.messages, r.max_tokens, tuple(r.stop), r.temperature, r.top_p, r.seed, r.continue_final))


def generate_answers(
    backend: Backend,
    requests: list[Request],
    *,
    dedupe: bool = False,
    progress: bool = True,
    on_done: Callable[[int], None] | None = None,
) -> list[Completion]:
    """The first completion of each (one-sample) answer request; ``dedupe`` asks identical requests once."""
    if not requests:
        return []
    if not dedupe:
        cb = (lambda i, comps: on_done(1)) if on_done else None
        return [comps[0] for comps in backend.generate(requests, progress=progress, on_result=cb)]
    unique: dict[str, int] = {}
    order = [unique.setdefault(request_identity(r), len(unique)) for r in requests]
    firsts: dict[int, Request] = {}
    for r, i in zip(requests, order):
        firsts.setdefault(i, r)
    outs = backend.generate([firsts[i] for i in range(len(unique))], progress=progress)
    return [outs[i][0] for i in order]


def generate_two_stage(
    backend: Backend,
    requests: list[Request],
    answer_request: AnswerRequestBuilder | None = None,
    *,
    answer_backend: Backend | None = None,
    clean_rationale: Callable[[Completion], str] | None = None,
    dedupe_answers: bool = False,
    progress: bool = True,
    on_done: Callable[[int], None] | None = None,
) -> list[list[TwoStageSample]]:
    """Per stage-1 request, its ``n`` samples, each answered in stage 2 when ``answer_request`` is given.

    ``on_done(samples)`` is called as samples finish (after their answer, for two-stage prompts): a progress bar
    can move per request instead of per batch."""
    # A local backend that can keep stage 1's keys/values pre-fills stage 2 from them (its prompt repeats stage 1's
    # prompt and rationale).
    keep = getattr(backend, "keeping_prefixes", None)
    same_backend = answer_request is not None and answer_backend in (None, backend)
    with keep() if keep is not None and same_backend else contextlib.nullcontext():
        return _two_stage(
            backend, requests, answer_request, answer_backend, clean_rationale, dedupe_answers, progress, on_done
        )


def _two_stage(
    backend: Backend,
    requests: list[Request],
    answer_request: AnswerRequestBuilder | None,
    answer_backend: Backend | None,
    clean_rationale: Callable[[Completion], str] | None,
    dedupe_answers: bool,
    progress: bool,
    on_done: Callable[[int], None] | None,
) -> list[list[TwoStageSample]]:
    first_done = (lambda i, comps: on_done(len(comps))) if on_done and answer_request is None else None
    outputs = backend.generate(requests, progress=progress, on_result=first_done)
    clean = clean_rationale or (lambda c: c.text)
    samples = [[TwoStageSample(req, c, clean(c)) for c in comps] for req, comps in zip(requests, outputs)]
    if answer_request is None:
        return samples
    # A rationale that was not generated (its prompt does not fit the context window) gets no answer: the answer's
    # prompt repeats that prompt, so it would not fit either.
    flat = [(i, s) for i, row in enumerate(samples) for s in row if skipped_reason(s.output) is None]
    if on_done is not None and len(flat) < sum(map(len, samples)):
        on_done(sum(map(len, samples)) - len(flat))  # the skipped samples are done
    for i, s in flat:
        s.answer_request = answer_request(i, s.request, s.rationale)
    answers = generate_answers(
        answer_backend or backend,
        [s.answer_request for _, s in flat],  # type: ignore[misc]
        dedupe=dedupe_answers,
        progress=progress,
        on_done=on_done if not dedupe_answers else None,
    )
    for (_, s), a in zip(flat, answers):
        s.answer = a
    return samples
