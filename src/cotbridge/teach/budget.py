"""Budget: what the owed calls may cost at the teacher's price, and where ``max_cost`` stops a live run (before a
chunk that could pass it) or cuts a Batch API export."""

from __future__ import annotations

import functools
import logging
from typing import Any

from cotbridge.backends.base import Request
from cotbridge.teach.plan import Owed, Plan

log = logging.getLogger(__name__)


class Budget:
    def __init__(self, plan: Plan, spent: float):
        self.plan, self.cfg = plan, plan.cfg
        self.spent = spent  # USD of the records already made
        self.stopped: str | None = None  # why a live run stopped at the cap (stop_before), for the summary

    @functools.cached_property
    def price_table(self) -> Any:
        """The teacher's ``prices`` option read once (None: the built-in table)."""
        from cotbridge.backends import pricing

        prices = self.cfg.teacher.options.get("prices")
        return pricing.load_price_table(prices) if prices is not None else None

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens at the teacher model's price (None: a model without a price)."""
        from cotbridge.backends import pricing

        model = self.cfg.teacher.model or self.cfg.teacher.backend
        return pricing.cost(model, prompt_tokens, completion_tokens, self.price_table)

    def estimate(self, todo: Owed) -> dict[str, Any]:
        """Upper bound for a dry run: prompt tokens ~ chars/4, every sample using all its max tokens."""
        mode, cfg = self.plan.mode, self.cfg
        prompt_tokens = completion_tokens = 0
        for ex, samples in todo:
            p = len(mode.first(ex, self.plan.ctx)) // 4 + 1
            prompt_tokens += p * (1 + (len(samples) if mode.second else 0))
            completion_tokens += len(samples) * (cfg.max_tokens + (cfg.answer_max_tokens if mode.second else 0))
            prompt_tokens += len(samples) * cfg.max_tokens if mode.second else 0
        return {
            "questions": len(todo),
            "samples": sum(len(s) for _, s in todo),
            "prompt_tokens": prompt_tokens,
            "completion_tokens_max": completion_tokens,
            "cost_usd_max": self.price(prompt_tokens, completion_tokens),
        }

    def stop_before(self, chunk: Owed) -> str | None:
        """Why the run stops before ``chunk`` (its worst case could pass ``max_cost``), or None to go on."""
        if self.cfg.max_cost is None:
            return None
        upcoming = self.estimate(chunk)["cost_usd_max"] or 0.0
        if self.spent + upcoming <= self.cfg.max_cost:
            return None
        stopped = f"max_cost {self.cfg.max_cost} USD: spent {self.spent:.4f}, next chunk could cost {upcoming:.4f}"
        log.warning("stopping cleanly at the cost cap (%s); rerun with a higher --max-cost to continue", stopped)
        self.stopped = stopped
        return stopped

    def within(self, pending: list[tuple[str, Request]]) -> list[tuple[str, Request]]:
        """The first pending calls whose worst-case cost (prompt ~ chars/4, every max token used) fits what is left of
        ``max_cost``: a Batch API export is capped like a live run."""
        if self.cfg.max_cost is None:
            return pending
        left, kept = self.cfg.max_cost - self.spent, []
        for key, req in pending:
            text = req.prompt if req.prompt is not None else " ".join(m["content"] for m in req.messages or [])
            cost = self.price(len(text) // 4 + 1, req.max_tokens) or 0.0
            if cost > left:
                log.warning(
                    "--max-cost %s USD: exported %d of %d pending calls (the rest could pass the cap); raise it "
                    "and export again for the rest",
                    self.cfg.max_cost,
                    len(kept),
                    len(pending),
                )
                break
            left -= cost
            kept.append((key, req))
        return kept
