"""Rationale-quality scoring over the eight aspects of LM-guided CoT (Lee et al. 2024).

Scorers are looked up by name in :data:`SCORERS`. ``judge`` asks a judge model (any backend, through
the request cache) one question per aspect and reads a bounded 1-5 scale or the fraction of "yes"
verdicts; the automatic scorers need no API and are cheap enough to serve as RL rewards: ``lm_fluency``
(a small LM's log-perplexity of the rationale, scaled by log |vocabulary|), ``embedding_relevance`` (cosine of
mean-pooled LM embeddings of rationale and question + context), ``lexical_relevance`` (the same with
content-word counts), ``grounding`` (share of the rationale's content words found in question or
context; a factuality proxy) and ``flesch`` (Flesch reading ease / 100). Every score is in [0, 1] and
is stored with what it was read from (the judge's raw replies, the mean log-probability, …).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter
from typing import Any

from cotbridge.quality.base import SCORERS, Item, ModelPool, Score, scorer_factory

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- text helpers

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its this that
these those which who whom whose what when where why how not no yes do does did so than then there here we you he she
they them his her their our your i me my let lets s step think answer question therefore because also has have had will
would can could should may might must into about over after before such""".split()
)


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1]


def _cosine(a: Counter, b: Counter) -> float:
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na, nb = math.sqrt(sum(v * v for v in a.values())), math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def source_text(item: Item) -> str:
    return f"{item.get('context') or ''}\n{item['question']}"


def syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    n = len(groups) - (1 if word.lower().endswith("e") and len(groups) > 1 else 0)
    return max(1, n)


# ---------------------------------------------------------------- automatic scorers


class LexicalRelevance:
    """Relevance: cosine similarity of content-word counts, rationale vs question + context."""

    name, aspects = "lexical_relevance", ("relevance",)

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        out = []
        for it in items:
            r, s = Counter(content_words(it["rationale"])), Counter(content_words(source_text(it)))
            out.append({"relevance": {"score": _cosine(r, s), "raw": {"shared_words": len(set(r) & set(s))}}})
        return out


class Grounding:
    """Factuality proxy: the share of the rationale's content words that occur in the question or context."""

    name, aspects = "grounding", ("factuality",)

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        out = []
        for it in items:
            words, known = content_words(it["rationale"]), set(content_words(source_text(it)))
            share = sum(w in known for w in words) / len(words) if words else 0.0
            out.append({"factuality": {"score": share, "raw": {"content_words": len(words)}}})
        return out


class Flesch:
    """Readability: Flesch reading ease clipped to [0, 100], divided by 100 (an empty rationale scores 0)."""

    name, aspects = "flesch", ("readability",)

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        out = []
        for it in items:
            words = re.findall(r"[A-Za-z0-9']+", it["rationale"])
            if not words:
                out.append({"readability": {"score": 0.0, "raw": {"ease": None}}})
                continue
            sentences = max(1, len(re.findall(r"[.!?]+(?:\s|$)", it["rationale"])))
            ease = 206.835 - 1.015 * len(words) / sentences - 84.6 * sum(map(syllables, words)) / len(words)
            out.append({"readability": {"score": min(100.0, max(0.0, ease)) / 100, "raw": {"ease": round(ease, 2)}}})
        return out


class LMFluency:
    """Fluency: 1 - (mean token negative log-likelihood under a small LM) / log(vocabulary size), clipped to [0, 1].

    0 means no more predictable than uniform guessing over the vocabulary (gibberish), 1 perfectly predictable;
    it is linear in log-perplexity, so it still separates rationales where perplexity itself (or its inverse)
    squashes everything towards 0.
    """

    name, aspects = "lm_fluency", ("fluency",)

    def __init__(self, model: str = "smollm2-135m-instruct", batch_size: int = 16, pool: ModelPool | None = None):
        self.model_name, self.batch_size = model, batch_size
        self.pool = pool if pool is not None else ModelPool()

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        import torch

        net, tok = self.pool.get(self.model_name)
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        out: list[dict[str, Score]] = []
        for b in range(0, len(items), self.batch_size):
            texts = [it["rationale"].strip() for it in items[b : b + self.batch_size]]
            ids = [[start] + tok(t, add_special_tokens=False)["input_ids"][:255] for t in texts]
            width = max(len(x) for x in ids)
            inp = torch.tensor([x + [tok.pad_token_id or 0] * (width - len(x)) for x in ids], device=net.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=net.device)
            with torch.inference_mode():
                logp = net(input_ids=inp, attention_mask=mask).logits.float().log_softmax(-1)
            tgt = logp[:, :-1].gather(-1, inp[:, 1:, None])[..., 0] * mask[:, 1:]
            log_v = math.log(len(tok))
            for row, x in enumerate(ids):
                n = len(x) - 1
                mean = tgt[row].sum().item() / n if n else None
                score = min(1.0, max(0.0, 1 + mean / log_v)) if mean is not None else 0.0
                out.append({"fluency": {"score": score, "raw": {"mean_logprob": mean, "tokens": n}}})
        return out


class EmbeddingRelevance:
    """Relevance: cosine of mean-pooled last-layer states of rationale and of question + context, clipped at 0."""

    name, aspects = "embedding_relevance", ("relevance",)

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        max_tokens: int = 384,
        batch_size: int = 16,
        pool: ModelPool | None = None,
    ):
        self.model_name, self.max_tokens, self.batch_size = model, max_tokens, batch_size
        self.pool = pool if pool is not None else ModelPool()
        self._memo: dict[str, Any] = {}  # the same context is embedded once per run

    def embed(self, texts: list[str]) -> list[Any]:
        """Mean-pooled embeddings (None for an empty text), batched, memoised by text."""
        import torch

        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = sorted({(k, t) for k, t in zip(keys, texts) if k not in self._memo and t.strip()})
        net, tok = self.pool.get(self.model_name) if todo else (None, None)
        for b in range(0, len(todo), self.batch_size):
            chunk = todo[b : b + self.batch_size]
            ids = [tok(t, add_special_tokens=False)["input_ids"][: self.max_tokens] for _, t in chunk]
            width = max(len(x) for x in ids)
            inp = torch.tensor([x + [tok.pad_token_id or 0] * (width - len(x)) for x in ids], device=net.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=net.device)
            with torch.inference_mode():
                hidden = net(input_ids=inp, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            for (key, _), vec in zip(chunk, pooled):
                self._memo[key] = vec
        return [self._memo.get(k) for k in keys]

    def score(self, items: list[Item]) -> list[dict[str, Score]]:
        import torch

        rationales = self.embed([it["rationale"].strip() for it in items])
        sources = self.embed([source_text(it).strip() for it in items])
        out = []
        for a, b in zip(rationales, sources):
            cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item() if a is not None and b is not None else 0.0
            out.append({"relevance": {"score": max(0.0, cos), "raw": {"cosine": cos}}})
        return out


# Every factory takes the shared model pool; only the model-based scorers use it.
SCORERS.add("lexical_relevance", scorer_factory(LexicalRelevance))
SCORERS.add("grounding", scorer_factory(Grounding))
SCORERS.add("flesch", scorer_factory(Flesch))
SCORERS.add("lm_fluency", scorer_factory(LMFluency, pooled=True))
SCORERS.add("embedding_relevance", scorer_factory(EmbeddingRelevance, pooled=True))
AUTOMATIC = ("lm_fluency", "embedding_relevance", "grounding", "flesch")
