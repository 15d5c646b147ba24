"""Last-letter concatenation (Wei et al.; Fine-tune-CoT wording) over k first names, with exact rationales."""

from __future__ import annotations

import random
import string
from functools import partial
from typing import Any

from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.registry import register_task
from cotbridge.tasks.synthetic.common import (
    NAMES,
    Draft,
    build_examples,
    check_int,
    error_rng,
    pick_step,
    split_drafts,
)

TASK_NAME = "synthetic_last_letter"
N_PHRASINGS = 4


def make_draft(rng: random.Random, k: int) -> Draft:
    """One question: k distinct names; the answer keeps the letters' case, as the original data does."""
    words = rng.sample(NAMES, k)
    question = f'Take the last letters of each words in "{" ".join(words)}" and concatenate them.'
    return Draft(question, "".join(w[-1] for w in words), {"words": words, "letters": [w[-1] for w in words]})


def render_rationale(example: Example, phrasing: int, error_step: int | None = None, rng: random.Random | None = None) -> str:
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


def load(data_dir: Any, split: str, *, k: int, n_train: int, n_test: int, seed: int) -> list[Example]:
    """Loader for the registry: deterministic, disjoint splits of generated questions."""
    k = check_int(TASK_NAME, "k", k, 1, len(NAMES))
    n_train = check_int(TASK_NAME, "n_train", n_train, 0)
    n_test = check_int(TASK_NAME, "n_test", n_test, 0)
    seed = check_int(TASK_NAME, "seed", seed, -(2**63))
    drafts = split_drafts(TASK_NAME, split, partial(make_draft, k=k), seed=seed, n_train=n_train, n_test=n_test)
    return build_examples(split, drafts, render_rationale, N_PHRASINGS, {"k": k})


TASK = register_task(
    Task(
        name=TASK_NAME,
        version="1.0",
        answer_type="string",
        loader=load,
        sizes={"train": 1000, "test": 200},
        family="synthetic",
        description="Concatenate the last letters of k first names (synthetic, exact reference rationales).",
        answer_trigger="Therefore, the answer is",
        params={"k": 4, "n_train": 1000, "n_test": 200, "seed": 0},
    )
)
