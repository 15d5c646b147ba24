"""The judge scorer: a judge model (any backend) answers one question per aspect about each rationale.

Two readings, both available through any backend: ``scale`` asks for a digit 1-5 and maps it to
(d - 1) / 4 (the judge's reply is started with "Rating (1-5):" where the backend can continue an
assistant message, so small judges give the digit first); ``yes_no`` asks a yes/no question and reports
the share of "yes" among ``samples`` sampled verdicts (an estimate of the judge's probability of "yes").
Calls go through the request cache like teacher calls, so rescoring is free; replies that hold no reading
score None and keep their raw text.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from cotbridge.backends.base import Request
from cotbridge.errors import UserError
from cotbridge.quality.base import ASPECTS, SCORERS, Item, Score, scorer_factory

PROMPT = """You are grading a rationale that was written to help answer a question.

Context: {context}
Question: {question}
Rationale: {rationale}

{aspect_question}
{instruction}"""
INSTRUCTIONS = {
    "scale": "Reply with a single digit from 1 (not at all) to 5 (completely).",
    "yes_no": "Reply with yes or no.",
}
# Where the reply starts with the prefix's continuation, the verdict is its first word; otherwise a stated
# rating ("rating: 4", "4/5", "4 out of 5"). A reply that opens a numbered list ("1. Adriana …") holds no rating.
SCALE_RE = re.compile(
    r"^\s*([1-5])(?![\d.)]\s*[A-Za-z])(?!\d)|(?:rating|score)\s*(?:is|of|:)?\s*([1-5])(?!\d)|"
    r"(?<!\d)([1-5])\s*(?:/\s*5|out of 5)",
    re.I,
)
READERS = {
    "scale": lambda text: (lambda m: (int(next(g for g in m.groups() if g)) - 1) / 4 if m else None)(
        SCALE_RE.search(text)
    ),
    "yes_no": lambda text: (lambda m: float(m.group(1).lower() == "yes") if m else None)(
        re.search(r"\b(yes|no)\b", text, re.I)
    ),
}
PREFIXES = {"scale": "Rating (1-5):", "yes_no": "Answer (yes or no):"}


def read_verdicts(texts: list[str], reading: str) -> float | None:
    """Mean of the readable verdicts (None when none is readable)."""
    values = [v for v in (READERS[reading](t) for t in texts) if v is not None]
    return sum(values) / len(values) if values else None


class JudgeScorer:
    name = "judge"

    def __init__(
        self,
        backend: str = "openai",
        model: str | None = None,
        options: dict[str, Any] | None = None,
        aspects: list[str] | None = None,
        reading: Literal["scale", "yes_no"] = "scale",
        samples: int = 1,
        temperature: float | None = None,
        max_tokens: int = 8,
        chat: bool = True,
        cache: str | None = None,
        max_context_words: int = 200,
        answer_prefix: str | None = "auto",
        backend_obj: Any = None,
    ):
        unknown = sorted(set(aspects or []) - set(ASPECTS))
        if unknown:
            raise UserError(f"unknown aspect(s) {unknown} (known: {', '.join(ASPECTS)})")
        if reading not in READERS:
            raise UserError(f"judge reading must be one of {', '.join(READERS)}, got {reading!r}")
        if samples < 1:
            raise UserError(f"judge samples must be at least 1, got {samples}")
        self.aspects = tuple(aspects or ASPECTS)
        self.reading, self.samples, self.max_tokens, self.chat = reading, samples, max_tokens, chat
        self.temperature = temperature if temperature is not None else (1.0 if samples > 1 else 0.0)
        self.max_context_words = max_context_words
        # The reply is started for the judge ("Rating (1-5):") so even a small judge answers with the verdict first;
        # APIs that cannot continue an assistant message (OpenAI's) need answer_prefix: null.
        self.answer_prefix = PREFIXES[reading] if answer_prefix == "auto" else answer_prefix
        self.backend = backend_obj if backend_obj is not None else self._open(backend, model, options or {}, cache)

    @staticmethod
    def _open(kind: str, model: str | None, options: dict[str, Any], cache: str | None) -> Any:
        from cotbridge.backends import get_backend
        from cotbridge.backends.request_cache import CachedBackend, RequestCache, default_cache_path
        from cotbridge.backends.secrets import check_no_literal_secrets

        where = "options.judge.options"  # the key `cotbridge score` reads them from
        check_no_literal_secrets(options, where)
        backend = get_backend(kind, where=where, model=model or kind, **options)
        if cache != "off" and getattr(backend, "cacheable", True):
            backend = CachedBackend(backend, RequestCache(cache or default_cache_path()))
        return backend

    def request(self, item: Item, aspect: str) -> Request:
        context = " ".join((item.get("context") or "(none)").split()[: self.max_context_words])
        text = PROMPT.format(
            context=context,
            question=item["question"],
            rationale=item["rationale"].strip() or "(empty)",
            aspect_question=ASPECTS[aspect],
            instruction=INSTRUCTIONS[self.reading],
        )
        common = dict(n=self.samples, temperature=self.temperature, max_tokens=self.max_tokens)
        if self.chat:
            messages = [{"role": "user", "content": text}]
            if self.answer_prefix:
                messages.append({"role": "assistant", "content": self.answer_prefix})
            return Request(messages=messages, continue_final=bool(self.answer_prefix), **common)
        return Request(prompt=f"{text}\n{self.answer_prefix or 'Answer:'}", **common)

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        reqs = [self.request(it, a) for it in items for a in self.aspects]
        outs = iter(self.backend.generate(reqs, progress=len(reqs) > 32) if reqs else [])
        results = []
        for _ in items:
            row = {}
            for aspect in self.aspects:
                texts = [c.text for c in next(outs)]
                row[aspect] = {"score": read_verdicts(texts, self.reading), "raw": texts, "reading": self.reading}
            results.append(row)
        return results


SCORERS.add("judge", scorer_factory(JudgeScorer))
