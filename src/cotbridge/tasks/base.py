"""What a task is: examples, splits, an answer type and how to load them."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotbridge.errors import UserError

SPLITS = ("train", "test")


@dataclass
class Example:
    """One question with its gold answer. ``id`` is stable across runs (dataset index or generated)."""

    id: str
    question: str
    answer: str
    aliases: list[str] = field(default_factory=list)  # extra acceptable answers (multi-hop spans)
    context: str | None = None  # paragraphs for extractive QA
    rationales: list[str] = field(default_factory=list)  # exact reference rationales (synthetic tasks)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def golds(self) -> list[str]:
        return [self.answer, *self.aliases]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}


# (data_dir, split, **params) -> examples
Loader = Callable[..., list[Example]]


@dataclass
class Task:
    """A registered task. ``sizes`` are the reference split sizes (what a full local copy yields)."""

    name: str
    version: str
    answer_type: str  # a key of cotbridge.answers.ANSWER_TYPES
    loader: Loader
    sizes: dict[str, int]
    description: str = ""
    family: str = "finetune_cot"  # finetune_cot | gsm8k | multihop | synthetic
    answer_trigger: str = "Therefore, the answer is"  # Kojima's task-specific stage-2 trigger
    choice_letters: str = ""  # for multiple choice: the letter range, e.g. "ABCDE"
    params: dict[str, Any] = field(default_factory=dict)  # defaults for parametrised (synthetic) tasks

    def load(self, split: str, data_dir: str | Path | None = None, **params: Any) -> list[Example]:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r} for task {self.name!r} (known: {', '.join(SPLITS)})")
        unknown = set(params) - set(self.params)
        if unknown:
            raise UserError(
                f"task {self.name!r} takes no parameter(s) {', '.join(sorted(unknown))}"
                + (f" (known: {', '.join(self.params)})" if self.params else "")
            )
        examples = self.loader(
            resolve_data_dir(data_dir) if self.family != "synthetic" else None, split, **{**self.params, **params}
        )
        if not examples:
            raise UserError(f"task {self.name!r}: the {split} split is empty")
        return examples


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``--data-dir`` wins, then $COTBRIDGE_DATA_DIR; None means 'load from the Hugging Face hub'."""
    if data_dir is not None and not str(data_dir).strip():  # `data_dir: ""` in a config went to the hub as unset
        raise UserError("data_dir is empty text: give the folder that holds the task data, or leave it out")
    chosen = data_dir or os.environ.get("COTBRIDGE_DATA_DIR")
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise UserError(f"data directory {path} does not exist")
    return path


def choice_letters(task: Task, ex: Example) -> str:
    """The letters a multiple-choice answer may take; parametrised tasks (synthetic_shuffled_objects:k=5) carry their
    letter range per example."""
    return ex.meta.get("choice_letters") or task.choice_letters


_CHOICE_RE = re.compile(r"\(([A-Z])\)\s*(.+?)(?=\s*,?\s*\([A-Z]\)|\s*\.?\s*$)", re.S)


def answer_choices(task: Task, ex: Example) -> dict[str, str]:
    """Letter -> option text of a multiple-choice question (``Answer choices: (A) ignore, (B) enforce, …``), from
    ``meta["choices"]`` when the loader kept them, else read off the question; empty for other answer types."""
    if task.answer_type != "choice":
        return {}
    if isinstance(ex.meta.get("choices"), dict):
        return {str(k): str(v) for k, v in ex.meta["choices"].items()}
    tail = ex.question.split("Answer choices:", 1)[-1] if "Answer choices:" in ex.question else ex.question
    return {m.group(1): m.group(2).strip() for m in _CHOICE_RE.finditer(tail)}
