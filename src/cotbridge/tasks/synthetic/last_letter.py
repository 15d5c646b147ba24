"""Last-letter concatenation (Wei et al.; Fine-tune-CoT wording) over k first names, with exact rationales."""

from __future__ import annotations

import random
import string

from cotbridge.tasks.base import Example
from cotbridge.tasks.synthetic.common import (
    NAMES,
    Draft,
    error_rng,
    k_loader,
    pick_step,
    register_synthetic,
)

TASK_NAME = "synthetic_last_letter"
N_PHRASINGS = 4


def make_draft(rng: random.Random, k: int) -> Draft:
    """One question: k distinct names; the answer keeps the letters' case, as the original data does."""
    words = rng.sample(NAMES, k)
    question = f'Take the last letters of each words in "{" ".join(words)}" and concatenate them.'
    return Draft(question, "".join(w[-1] for w in words), {"words": words, "letters": [w[-1] for w in words]})


def render_rationale(
    example: Example, phrasing: int, error_step: int | None = None, rng: random.Random | None = None
) -> str:
    """Re-render the reasoning from the trace; ``error_step`` (0-based word index) gets a wrong letter."""
    words: list[str] = list(example.meta["trace"]["words"])
    letters = [w[-1] for w in words]
    step = pick_step(error_step, len(words))
    if step is not None:
        r = error_rng(example, step, rng)
        letters[step] = r.choice([c for c in string.ascii_lowercase if c != letters[step]])
    result = "".join(letters)
    p = phrasing % N_PHRASINGS
    if p == 0:
        body = " ".join(f'The last letter of "{w}" is "{c}".' for w, c in zip(words, letters))
        return f'{body} Concatenating them gives "{result}".'
    if p == 1:
        pairs = ", ".join(f"{w} -> {c}" for w, c in zip(words, letters))
        return f'{pairs}. {" + ".join(letters)} = "{result}".'
    if p == 2:
        lines = [f'{i}. "{w}" ends in "{c}".' for i, (w, c) in enumerate(zip(words, letters), 1)]
        lines.append(f'{len(words) + 1}. Joining the letters in order gives "{result}".')
        return "\n".join(lines)
    parts, acc = [], ""
    for w, c in zip(words, letters):
        acc += c
        parts.append(f'"{w}" ends with "{c}", so far we have "{acc}".')
    parts.append(f'So the letters together spell "{result}".')
    return " ".join(parts)


TASK = register_synthetic(
    TASK_NAME,
    answer_type="string",
    k=4,
    loader=k_loader(TASK_NAME, make_draft, render_rationale, N_PHRASINGS, 1, len(NAMES)),
    description="Concatenate the last letters of k first names (synthetic, exact reference rationales).",
    answer_trigger="Therefore, the answer is",
)
