"""Built-in synthetic reasoning tasks; importing this package registers them all."""

from __future__ import annotations

from collections.abc import Callable

from cotbridge.tasks.synthetic import arithmetic, coin_flip, last_letter, shuffled_objects

# task name -> render_rationale(example, phrasing, error_step=None, rng=None); no registry needed.
RENDERERS: dict[str, Callable[..., str]] = {
    m.TASK_NAME: m.render_rationale for m in (last_letter, coin_flip, shuffled_objects, arithmetic)
}
# task name -> how many distinct phrasings its renderer has.
N_PHRASINGS: dict[str, int] = {
    m.TASK_NAME: m.N_PHRASINGS for m in (last_letter, coin_flip, shuffled_objects, arithmetic)
}

__all__ = ["RENDERERS", "N_PHRASINGS", "arithmetic", "coin_flip", "last_letter", "shuffled_objects"]
