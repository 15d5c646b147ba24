"""Built-in synthetic reasoning tasks; importing this package registers them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cotbridge.tasks.synthetic import arithmetic, coin_flip, last_letter, shuffled_objects

# task name -> render_rationale(example, phrasing, error_step=None, rng=None); no registry needed.
RENDERERS: dict[str, Callable[..., str]] = {
    m.TASK_NAME: m.render_rationale for m in (last_letter, coin_flip, shuffled_objects, arithmetic)
}
# task name -> how many distinct phrasings its renderer has.
N_PHRASINGS: dict[str, int] = {
    m.TASK_NAME: m.N_PHRASINGS for m in (last_letter, coin_flip, shuffled_objects, arithmetic)
}

# How many steps a rationale of each task has: the injected error's step is a draw taken modulo this count.
STEP_COUNTS: dict[str, Callable[[Any], int]] = {
    "synthetic_arithmetic": lambda ex: len(ex.meta["trace"]["ops"]),
    "synthetic_coin_flip": lambda ex: len(ex.meta["trace"]["people"]),
    "synthetic_last_letter": lambda ex: len(ex.meta["trace"]["words"]),
    "synthetic_shuffled_objects": lambda ex: len(ex.meta["trace"]["swaps"]),
}

__all__ = ["RENDERERS", "N_PHRASINGS", "STEP_COUNTS", "arithmetic", "coin_flip", "last_letter", "shuffled_objects"]
