"""Shared helpers for the synthetic tasks: names, deterministic disjoint splits, parameter checks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from cotbridge.errors import UserError
from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.registry import register_task

# ~200 first names (capitalised, ASCII letters only, at least two letters, all distinct).
NAMES: tuple[str, ...] = tuple(
    """
    Aaron Abigail Adam Adrian Aisha Alan Albert Alejandro Alexa Alice Alicia Amara Amelia Amir Amy Andre Andrea
    Angela Anita Anna Anthony Arjun Arthur Ava Barbara Beatrice Ben Benito Bianca Boris Brandon Brenda Bruno
    Caleb Camila Carla Carlos Carmen Caroline Cesar Chen Chloe Chris Clara Colin Connor Cristina Dalia Daniel
    Daria Darius David Dean Deborah Denise Derek Diana Diego Dmitri Dolores Dora Dylan Edgar Edith Eduardo
    Elena Eli Elias Elijah Ellen Emma Enrique Eric Erika Esther Ethan Eva Fatima Felix Fernando Fiona Frank
    Gabriel Gemma Georgia Gerald Gina Grace Greta Hana Hannah Harold Hector Helen Hugo Ian Ida Ingrid Irene
    Isaac Ivan Jack Jada Jamal Jasmine Javier Jenna Joanna Jorge Josh Julia Julian Kai Karen Karim Kate Keith
    Kenji Kevin Kim Lara Laura Leah Leo Leon Lila Linda Lionel Lucas Lucia Luis Luna Maya Marco Maria Marisol
    Mark Martin Mateo Megan Mei Mia Miguel Mila Milo Mira Mohamed Monica Nadia Naomi Nathan Nia Nick Nina
    Noah Nora Olga Oliver Omar Oscar Owen Pablo Paula Pedro Petra Priya Quentin Rachel Rafael Rahul Ramona
    Raul Rebecca Rita Roberto Rosa Ruby Ruth Sam Sandra Sara Sergio Sherrie Simon Sofia Sonia Stella Tara
    Tessa Theo Tj Tomas Uma Valeria Victor Vivian Wanda Whitney Xavier Yara Yusuf Zane Zenaida Zoe
    """.split()
)


@dataclass
class Draft:
    """A generated question before it becomes an Example: text, gold answer and its exact trace."""

    question: str
    answer: str
    trace: dict[str, Any]


Maker = Callable[[random.Random], Draft]
Renderer = Callable[..., str]


def check_int(task: str, name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Validate an integer parameter (ints or digit strings from the CLI) so bad input is one UserError."""
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"task {task!r}: parameter {name} must be an integer, got {value!r}") from None
    if number < lo or (hi is not None and number > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise UserError(f"task {task!r}: parameter {name} must be {bounds}, got {number}")
    return number


def seeded_rng(task: str, seed: int, split: str) -> random.Random:
    """A per-task, per-split stream; string seeds are stable across Python runs (unlike hash())."""
    return random.Random(f"{task}:{seed}:{split}")


def draw_unique(task: str, split: str, rng: random.Random, make: Maker, n: int, exclude: set[str]) -> list[Draft]:
    """Draw ``n`` drafts whose questions are new and not in ``exclude``; give up after a bounded number of tries."""
    out: list[Draft] = []
    seen = set(exclude)
    limit = 50 * n + 1000
    for _ in range(limit):
        if len(out) >= n:
            break
        draft = make(rng)
        if draft.question not in seen:
            seen.add(draft.question)
            out.append(draft)
    if len(out) < n:
        raise UserError(
            f"task {task!r}: could only generate {len(out)} distinct {split} questions of the {n} asked for "
            f"in {limit} tries; raise the difficulty (k) or ask for fewer examples"
        )
    return out


def split_drafts(task: str, split: str, make: Maker, *, seed: int, n_train: int, n_test: int) -> list[Draft]:
    """Test comes from its own stream first (so n_train never moves it); train skips every test question."""
    test = draw_unique(task, "test", seeded_rng(task, seed, "test"), make, n_test, set())
    if split == "test":
        return test
    return draw_unique(task, "train", seeded_rng(task, seed, "train"), make, n_train, {d.question for d in test})


def build_examples(
    split: str, drafts: list[Draft], render: Renderer, n_phrasings: int, meta: dict[str, Any] | None = None
) -> list[Example]:
    """Turn drafts into Examples with ids ``{split}-{i}`` and one exact rationale per phrasing."""
    examples = []
    for i, d in enumerate(drafts):
        ex = Example(id=f"{split}-{i}", question=d.question, answer=d.answer, meta={**(meta or {}), "trace": d.trace})
        ex.rationales = [render(ex, p) for p in range(n_phrasings)]
        examples.append(ex)
    return examples


def pick_step(error_step: int | None, n_steps: int) -> int | None:
    """The step to corrupt: ``error_step`` taken modulo the number of steps (so -1 is the last one)."""
    return None if error_step is None else error_step % n_steps


def error_rng(example: Example, step: int, rng: random.Random | None) -> random.Random:
    """The caller's rng, else one seeded from the question so the same error is made every time."""
    return rng if rng is not None else random.Random(f"error:{example.question}:{step}")


def join_and(items: list[str]) -> str:
    """'A', 'A and B', 'A, B, and C' (the serial comma, as BIG-bench writes lists)."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def k_loader(
    task_name: str,
    make_draft: Callable[..., Draft],
    render: Callable[..., str],
    n_phrasings: int,
    k_min: int,
    k_max: int,
) -> Callable[..., list[Example]]:
    """The registry loader of a task whose only difficulty knob is ``k``."""

    def load(data_dir: Any, split: str, *, k: int, n_train: int, n_test: int, seed: int) -> list[Example]:
        k = check_int(task_name, "k", k, k_min, k_max)
        n_train = check_int(task_name, "n_train", n_train, 0)
        n_test = check_int(task_name, "n_test", n_test, 0)
        seed = check_int(task_name, "seed", seed, -(2**63))
        drafts = split_drafts(task_name, split, partial(make_draft, k=k), seed=seed, n_train=n_train, n_test=n_test)
        return build_examples(split, drafts, render, n_phrasings, {"k": k})

    return load


def register_synthetic(
    name: str,
    *,
    answer_type: str,
    loader: Callable[..., list[Example]],
    description: str,
    answer_trigger: str,
    k: int,
    choice_letters: str = "",
    version: str = "1.0",
    **extra_params: Any,
) -> Task:
    return register_task(
        Task(
            name=name,
            version=version,
            answer_type=answer_type,
            loader=loader,
            sizes={"train": 1000, "test": 200},
            family="synthetic",
            description=description,
            answer_trigger=answer_trigger,
            choice_letters=choice_letters,
            params={"k": k, **extra_params, "n_train": 1000, "n_test": 200, "seed": 0},
        )
    )
