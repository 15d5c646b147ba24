"""The sets reasoning distillation is measured on today: MATH-500, AIME 2024, AIME 2025 and GPQA-Diamond.

Each is a test set only (no train split). Data comes from ``<data_dir>/reasoning/<task>.jsonl`` in the hub copy's
own fields when there, else from the hub copy named in the task's version (``datasets.load_dataset``; GPQA is gated:
log in with ``huggingface-cli login`` first). Math answers are checked with math-verify (answer type ``math``);
GPQA's four options are shuffled once per question, seeded by its id, and asked as letters A-D.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import read_jsonl
from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.hub import HubSpec, load_from_hub, register_hub
from cotbridge.tasks.registry import register_task

MATH_TRIGGER = "Therefore, the final answer (in \\boxed{}) is"


def math500_example(rec: dict[str, Any], id_: str) -> Example:
    return Example(
        id=str(rec.get("unique_id") or id_),
        question=rec["problem"].strip(),
        answer=str(rec["answer"]).strip(),
        meta={k: rec[k] for k in ("subject", "level") if k in rec},
    )


def aime_example(rec: dict[str, Any], id_: str) -> Example:
    return Example(id=str(rec.get("id", id_)), question=rec["problem"].strip(), answer=str(rec["answer"]).strip())


def gpqa_example(rec: dict[str, Any], id_: str) -> Example:
    rid = str(rec.get("Record ID") or id_)
    options = [rec["Correct Answer"], rec["Incorrect Answer 1"], rec["Incorrect Answer 2"], rec["Incorrect Answer 3"]]
    options = [str(o).strip() for o in options]
    order = list(range(4))
    random.Random(f"gpqa:{rid}").shuffle(order)  # the same letters for a question on every run
    choices = {"ABCD"[pos]: options[i] for pos, i in enumerate(order)}
    listed = ", ".join(f"({letter}) {text}" for letter, text in choices.items())
    answer = "ABCD"[order.index(0)]
    return Example(
        id=rid,
        question=f"{rec['Question'].strip()} Answer choices: {listed}.",
        answer=answer,
        meta={"choices": choices},
    )


# name: (hub path, config, hub split for our test split, converter, answer type, letters, size)
SETS: dict[str, tuple[str, str | None, str, Callable[[dict[str, Any], str], Example], str, str, int]] = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test", math500_example, "math", "", 500),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train", aime_example, "math", "", 30),
    "aime25": ("yentinglin/aime_2025", None, "train", aime_example, "math", "", 30),
    "gpqa_diamond": ("Idavidrein/gpqa", "gpqa_diamond", "train", gpqa_example, "choice", "ABCD", 198),
}


def make_loader(name: str) -> Callable[..., list[Example]]:
    convert = SETS[name][3]

    def load(data_dir: Path | None, split: str) -> list[Example]:
        if split != "test":
            raise UserError(f"task {name!r} is a test set: it has no {split} split")
        local = data_dir / "reasoning" / f"{name}.jsonl" if data_dir is not None else None
        if local is None or not local.is_file():
            if data_dir is not None:
                raise UserError(f"task {name!r}: no {local}; without --data-dir it loads from the hub")
            return load_from_hub(name, split)
        out = []
        for i, rec in enumerate(read_jsonl(local)):
            try:
                out.append(convert(rec, str(i)))
            except KeyError as e:
                raise DataError(local, f"no {e.args[0]!r} field (expected the hub copy's fields)", i + 1) from None
        return out

    return load


for _name, (_path, _config, _split, _convert, _atype, _letters, _size) in SETS.items():
    register_hub(_name, HubSpec(_path, _config, {"test": _split}, _convert))
    register_task(
        Task(
            name=_name,
            version=f"{_path}{':' + _config if _config else ''}@{_split}",  # the copy it was read from
            answer_type=_atype,
            loader=make_loader(_name),
            sizes={"train": 0, "test": _size},
            description=f"{_name} ({_path})",
            family="reasoning",
            answer_trigger=MATH_TRIGGER if _atype == "math" else "Therefore, among A through D, the answer is",
            choice_letters=_letters,
        )
    )
