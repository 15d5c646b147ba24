"""Generate: open the teacher's backend behind the request cache, and run chunks of owed samples through the one
two-stage routine (rationale, then the answer after it)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from cotbridge.backends import BACKENDS, get_backend
from cotbridge.backends.base import Request
from cotbridge.backends.request_cache import CachedBackend, RequestCache, contiguous_runs, default_cache_path
from cotbridge.inference.two_stage import TwoStageSample, generate_two_stage
from cotbridge.tasks import Example
from cotbridge.teach.config import TeachConfig
from cotbridge.teach.plan import Owed, Plan

Generated = list[tuple[Example, int, TwoStageSample]]  # (question, sample index, its two-stage output)


def open_backend(cfg: TeachConfig, backend: Any = None) -> Any:
    """``backend`` (a ready object, or a function that makes one: a large model is loaded only when a request is
    owed) or the configured teacher, behind the request cache unless it is off."""
    if callable(backend) and not hasattr(backend, "generate"):
        backend = backend()
    if backend is None:
        t = cfg.teacher
        options = dict(t.options)
        # Backends that read the task themselves (oracle) get the task being taught unless told otherwise.
        takes = inspect.signature(BACKENDS.get(t.backend)).parameters
        for key, value in (("task", cfg.task), ("split", cfg.split), ("data_dir", cfg.data_dir)):
            if key in takes and key not in options:
                options[key] = value
        backend = get_backend(t.backend, where="teacher.options", model=t.model or t.backend, **options)
    if cfg.cache != "off" and getattr(backend, "cacheable", True) and not isinstance(backend, CachedBackend):
        backend = CachedBackend(backend, RequestCache(cfg.cache or default_cache_path()))
    return backend


def teacher_info(cfg: TeachConfig, backend: Any) -> dict[str, Any]:
    """Who answered, for every record: the configured backend and the model it reports (or the configured one)."""
    return {"backend": cfg.teacher.backend, "model": getattr(backend, "model_id", cfg.teacher.model)}


def run_chunk(backend: Any, plan: Plan, chunk: Owed, on_done: Callable[[int], Any] | None = None) -> Generated:
    firsts: list[tuple[Example, list[int], Request]] = []
    for ex, samples in chunk:
        for run in contiguous_runs(samples):
            firsts.append((ex, run, plan.first_request(ex, run)))

    def ask(i: int, req: Request, rationale: str) -> Request:
        return plan.answer_request(firsts[i][0], req, rationale)

    outputs = generate_two_stage(
        backend, [r for _, _, r in firsts], ask if plan.mode.second else None, progress=False, on_done=on_done
    )
    return [(ex, j, s) for (ex, run, _), samples in zip(firsts, outputs) for j, s in zip(run, samples)]
