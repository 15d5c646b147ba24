"""The OpenAI Batch API path of generation: export the calls still owed (each under its request-cache key), and put
the batch's results into the request cache, so the next live run calls nothing for them."""

from __future__ import annotations

import logging
from pathlib import Path

from cotbridge.backends.base import Request
from cotbridge.backends.request_cache import CachedBackend, request_key
from cotbridge.errors import UserError
from cotbridge.teach.plan import Owed, Plan

log = logging.getLogger(__name__)


def pending_requests(backend: CachedBackend, plan: Plan, owed: Owed) -> list[tuple[str, Request]]:
    """(cache key, one-sample request) for every call still needed; two-stage answers once rationales exist."""
    inner = getattr(backend, "backend", backend)
    if not hasattr(inner, "export_batch_jsonl"):  # first: the reference backend is never cached, so it got the next
        raise UserError(f"the {inner.kind} backend has no Batch API (--batch-export / --batch-import); use openai")
    if not isinstance(backend, CachedBackend):
        raise UserError("the Batch API needs the request cache (cache must not be 'off')")
    cache = backend.cache
    pending = []
    for ex, samples in owed:
        for j in samples:
            first = plan.first_request(ex, [j])
            key = request_key(inner.kind, inner.model_id, first, j)
            got = cache.get(key)
            if got is None:
                pending.append((key, first))
            elif plan.mode.second:
                answer = plan.answer_request(ex, first, got.text)
                if cache.get(akey := request_key(inner.kind, inner.model_id, answer, 0)) is None:
                    pending.append((akey, answer))
    return list(dict(pending).items())  # identical calls (same rationale twice) are asked once


def export_batch(backend: CachedBackend, pending: list[tuple[str, Request]], path: str | Path) -> int:
    inner = backend.backend
    inner.export_batch_jsonl([r for _, r in pending], path, custom_ids=[k for k, _ in pending])
    log.info("wrote %d batch requests to %s", len(pending), path)
    return len(pending)


def import_batch(backend: CachedBackend, pending: list[tuple[str, Request]], path: str | Path) -> int:
    """Put Batch API results for ``pending`` calls into the request cache; others are ignored with a warning."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file (the Batch API's output file to import)")
    by_key = dict(pending)
    results = backend.backend.import_batch_results(path, requests=by_key)
    stored = 0
    for key, comps in results.items():
        if key not in by_key:
            log.warning("%s: custom_id %s is not a pending request of this run; ignored", path, key[:12])
            continue
        stored += backend.cache.put(key, comps[0])
    log.info("imported %d of %d batch results into the cache", stored, len(results))
    return stored
