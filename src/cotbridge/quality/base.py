"""What every rationale-quality scorer shares: the eight aspects, the scorer interface, its registry and the pool of
loaded models that model-based scorers draw from (passed in by whoever owns the models, never a global)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cotbridge.registry import Registry

# The aspects, each with the question a judge is asked about a rationale.
ASPECTS: dict[str, str] = {
    "factuality": "Is every statement in the rationale true according to the context?",
    "relevance": "Is the rationale about the question and the information needed to answer it?",
    "logicality": "Does each reasoning step follow logically from the previous ones?",
    "consistency": "Is the rationale free of contradictions, both internally and with the question and context?",
    "coherence": "Do the sentences of the rationale connect into one clear line of reasoning?",
    "fluency": "Is the rationale written in grammatical, well-formed English?",
    "naturalness": "Does the rationale read like something a knowledgeable person would naturally write?",
    "readability": "Is the rationale easy to read and understand?",
}
Item = dict[str, Any]  # at least question, rationale; context optional
Score = dict[str, Any]  # {"score": float | None, "raw": ...}


class Scorer(Protocol):
    name: str
    aspects: tuple[str, ...]

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        """One {aspect: score} per item."""
        ...


SCORERS: Registry[Callable[..., Scorer]] = Registry("rationale-quality scorer")


def scorer_factory(cls: Callable[..., Scorer], pooled: bool = False) -> Callable[..., Scorer]:
    """What SCORERS holds for ``cls``: called as ``factory(pool=..., **options)``, it passes ``pool`` on only to a
    scorer that loads models (``pooled``). Its signature is ``cls``'s (``__wrapped__``), so the options are checked
    against the scorer's own parameters (registry.check_options)."""

    def make(pool: ModelPool | None = None, **options: Any) -> Scorer:
        return cls(pool=pool, **options) if pooled else cls(**options)

    make.__wrapped__ = cls  # type: ignore[attr-defined]
    return make


# ---------------------------------------------------------------- shared models


class ModelPool:
    """Loaded (model, tokenizer) pairs by name, so the large model, fluency LM and embedder load once."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[Any, Any]] = {}

    def put(self, name: str, model: Any, tokenizer: Any) -> None:
        self._models[name] = (model, tokenizer)

    def get(self, name: str) -> tuple[Any, Any]:
        if name not in self._models:
            from cotbridge.models.loading import load_model_and_tokenizer

            self._models[name] = load_model_and_tokenizer(name)
        return self._models[name]
