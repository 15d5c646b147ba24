"""What LM-guided CoT's stages share: each task's questions (contexts trimmed once) and the large model's prompts,
and the frozen large model itself, loaded once per run. In-process calls reach it through the run's request cache,
the quality scorers borrow its weights from the pool, and the evaluation may reach it behind ``cotbridge serve``."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cotbridge.jsonl import write_json
from cotbridge.quality.base import ModelPool
from cotbridge.recipes.lm_guided.config import LMGuidedConfig
from cotbridge.recipes.lm_guided.inference import LargePrompts, trim_context
from cotbridge.tasks import Example, Task, parse_task_spec

log = logging.getLogger(__name__)


class TaskData:
    """The run's tasks, their questions per split (loaded and trimmed once) and their large-model prompts."""

    def __init__(self, cfg: LMGuidedConfig):
        self.cfg = cfg
        self.tasks: list[Task] = [parse_task_spec(t)[0] for t in cfg.tasks]
        self._examples: dict[tuple[str, str], list[Example]] = {}
        self._prompts: dict[str, LargePrompts] = {}

    def examples(self, task: Task, split: str, limit: int | None) -> list[Example]:
        key = (task.name, split)
        if key not in self._examples:
            self._examples[key] = [trim_context(ex, self.cfg.context) for ex in task.load(split, self.cfg.data_dir)]
        return self._examples[key][:limit] if limit else self._examples[key]

    def prompts(self, task: Task) -> LargePrompts:
        if task.name not in self._prompts:
            lg = self.cfg.large
            self._prompts[task.name] = LargePrompts(
                task,
                chat=lg.chat,
                rationale_max_tokens=lg.rationale_max_tokens,
                answer_max_tokens=lg.answer_max_tokens,
            )
        return self._prompts[task.name]


class LargeModel:
    """The frozen large model. ``injected``: a backend object to use instead of building one from ``cfg.large``."""

    def __init__(self, cfg: LMGuidedConfig, injected: Any = None):
        self.cfg = cfg
        self.pool = ModelPool()  # the large model once loaded; the fluency and embedding scorers draw from it
        self._hf: Any = None
        self._injected = injected is not None
        self._client: Any = self.cached(injected) if injected is not None else None

    def hf(self) -> Any:
        """The large model loaded in this process (hf backend only), shared by calls, serving and scorers."""
        if self._hf is None and self.cfg.large.backend == "hf" and not self._injected:
            from cotbridge.backends.hf import HFBackend

            lg = self.cfg.large
            self._hf = HFBackend(lg.model, batch_size=lg.batch_size, **lg.options)
            self.pool.put(lg.model, self._hf.model, self._hf.tokenizer)
        return self._hf

    def cached(self, backend: Any) -> Any:
        from cotbridge.backends.request_cache import CachedBackend, RequestCache

        if self.cfg.cache == "off":
            return backend
        return CachedBackend(backend, RequestCache(self.cfg.cache or self.cfg.directory() / "requests.sqlite"))

    def client(self) -> Any:
        """For in-process calls (teaching, RL rewards, the judge), through the request cache."""
        if self._client is None:
            from cotbridge.backends import get_backend
            from cotbridge.backends.secrets import check_no_literal_secrets

            lg = self.cfg.large
            if lg.backend == "hf":
                base = self.hf()
            else:
                check_no_literal_secrets(lg.options, "large.options")
                base = get_backend(lg.backend, model=lg.model, where="large.options", **lg.options)
            self._client = self.cached(base)
        return self._client

    def for_eval(self, stack: ExitStack) -> Any:
        """For the evaluation: behind ``cotbridge serve`` (closed with ``stack``) when configured, else ``client``."""
        lg = self.cfg.large
        if not (lg.serve and lg.backend == "hf") or self._injected:
            return self.client()
        from cotbridge.backends.openai_api import OpenAIBackend
        from cotbridge.server import running_server

        url = stack.enter_context(running_server(self.hf(), model_name=lg.model))
        log.info("large model served at %s", url)
        return self.cached(
            OpenAIBackend(lg.model, base_url=url, api="chat" if lg.chat else "completions", concurrency=2)
        )

    def record(self, path: Path) -> None:
        """The loaded model's name and size, for the report (nothing when it was never loaded here)."""
        if self._hf is not None:
            params = sum(p.numel() for p in self._hf.model.parameters())
            write_json(path, {"model": self.cfg.large.model, "params": params})
