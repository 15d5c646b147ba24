"""The twelve Fine-tune-CoT tasks (Ho et al. 2023) from the unified JSON + split-index layout.

Layout (as released with the paper's code, and in ``shared/data/finetune_cot/``)::

    <data_dir>/finetune_cot/dataset/<name>.json        list of {question, answer, ...}
    <data_dir>/finetune_cot/split/<name>__default.json {"train": [idx...], "test": [idx...]}

GSM8K and AQuA fall back to their official files when the unified copy is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import read_json, read_jsonl
from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.hub import HubSpec, load_from_hub, register_hub
from cotbridge.tasks.registry import register_task
from cotbridge.tasks.triggers import answer_trigger

# name: (answer type, choice letters, train size, test size)
FINETUNE_COT_TASKS: dict[str, tuple[str, str, int, int]] = {
    "single_eq": ("number", "", 356, 152),
    "addsub": ("number", "", 276, 119),
    "multiarith": ("number", "", 420, 180),
    "gsm8k": ("number", "", 7473, 1319),
    "aqua": ("choice", "ABCDE", 10000, 254),
    "svamp": ("number", "", 700, 300),
    "date_understanding": ("choice", "ABCDEF", 258, 111),
    "tracking_shuffled_objects": ("choice", "ABC", 525, 225),
    "last_letter_concatenation": ("string", "", 350, 150),
    "coin_flip": ("yesno", "", 350, 150),
    "commonsense_qa": ("choice", "ABCDE", 9741, 1221),
    "strategy_qa": ("yesno", "", 1603, 687),
}


def unified_paths(data_dir: Path, name: str, split_kind: str = "default") -> tuple[Path, Path]:
    root = data_dir / "finetune_cot" if (data_dir / "finetune_cot").is_dir() else data_dir
    return root / "dataset" / f"{name}.json", root / "split" / f"{name}__{split_kind}.json"


def load_unified(data_dir: Path, name: str, split: str) -> list[Example]:
    """Examples of one split; ids are indices into the unified dataset file."""
    data_path, split_path = unified_paths(data_dir, name)
    records = read_json(data_path)
    if not isinstance(records, list):
        raise DataError(data_path, "expected a JSON list of {question, answer} objects")
    split_index = read_json(split_path)
    if not isinstance(split_index, dict) or split not in split_index:
        raise DataError(split_path, f"expected an object with a {split!r} list of indices")
    examples = []
    for idx in split_index[split]:
        if not isinstance(idx, int) or not 0 <= idx < len(records):
            raise DataError(
                split_path, f"index {idx!r} in {split!r} is outside {data_path.name} ({len(records)} records)"
            )
        rec = records[idx]
        for key in ("question", "answer"):
            if not isinstance(rec, dict) or key not in rec:
                raise DataError(data_path, f"record {idx} has no {key!r} field")
        meta = {k: v for k, v in rec.items() if k not in ("question", "answer")}
        examples.append(
            Example(id=str(idx), question=rec["question"].strip(), answer=str(rec["answer"]).strip(), meta=meta)
        )
    return examples


def gsm8k_official(data_dir: Path, split: str) -> list[Example] | None:
    """GSM8K's own ``{train,test}.jsonl`` (answer after '#### '), in ``<data_dir>/gsm8k/`` or ``<data_dir>``."""
    for folder in (data_dir / "gsm8k", data_dir):
        path = folder / f"{split}.jsonl"
        if path.is_file():
            return [gsm8k_example(rec, f"{split}-{i}", path, i + 1) for i, rec in enumerate(read_jsonl(path))]
    return None


def gsm8k_example(rec: dict[str, Any], id_: str, path: object = "<gsm8k>", line: int | None = None) -> Example:
    solution = rec.get("answer")
    if "question" not in rec or not isinstance(solution, str) or "####" not in solution:
        raise DataError(path, "expected {question, answer} with the answer after '####'", line)
    reasoning, final = solution.rsplit("####", 1)
    return Example(
        id=id_,
        question=rec["question"].strip(),
        answer=final.strip().replace(",", ""),
        meta={"reasoning": reasoning.strip()},
    )


def aqua_official(data_dir: Path, split: str) -> list[Example] | None:
    """AQuA-RAT's own JSONL files (``aqua/{train,test}.json``), choices folded into the question."""
    path = data_dir / "aqua" / f"{split}.json"
    if not path.is_file():
        return None
    return [aqua_example(rec, f"{split}-{i}", path, i + 1) for i, rec in enumerate(read_jsonl(path))]


def aqua_example(rec: dict[str, Any], id_: str, path: object = "<aqua>", line: int | None = None) -> Example:
    if not {"question", "options", "correct"} <= set(rec):
        raise DataError(path, "expected {question, options, correct}", line)
    choices = ", ".join(f"({o[0]}) {o[2:].strip()}" for o in rec["options"])
    return Example(
        id=id_,
        question=f"{rec['question'].strip()} Answer choices: {choices}.",
        answer=rec["correct"].strip(),
        meta={"rationale": rec.get("rationale", "")},
    )


def unified(name: str) -> Callable[[Path, str], list[Example] | None]:
    def load(data_dir: Path, split: str) -> list[Example] | None:
        return load_unified(data_dir, name, split) if unified_paths(data_dir, name)[0].is_file() else None

    return load


# Where each task's local data may live, tried in order. GSM8K prefers its official JSONL so that
# example ids are line numbers of test.jsonl (what released GSM8K outputs are keyed by).
LOCAL_SOURCES: dict[str, list[Callable[[Path, str], list[Example] | None]]] = {
    name: [unified(name)] for name in FINETUNE_COT_TASKS
}
LOCAL_SOURCES["gsm8k"] = [gsm8k_official, unified("gsm8k")]
LOCAL_SOURCES["aqua"] = [unified("aqua"), aqua_official]


def make_loader(name: str) -> Callable[..., list[Example]]:
    def load(data_dir: Path | None, split: str) -> list[Example]:
        if data_dir is None:
            return load_from_hub(name, split)
        for source in LOCAL_SOURCES[name]:
            found = source(data_dir, split)
            if found is not None:
                return found
        raise UserError(
            f"task {name!r}: no {split} data under {data_dir} (looked for {unified_paths(data_dir, name)[0]}"
            + (" and the official files)" if len(LOCAL_SOURCES[name]) > 1 else ")")
        )

    return load


for _name, (_atype, _letters, _train, _test) in FINETUNE_COT_TASKS.items():
    register_task(
        Task(
            name=_name,
            version="1.0",
            answer_type=_atype,
            loader=make_loader(_name),
            sizes={"train": _train, "test": _test},
            description=f"Fine-tune-CoT benchmark {_name}",
            answer_trigger=answer_trigger(_atype, _letters),
            choice_letters=_letters,
        )
    )


# Public hub copies whose fields map onto Example (tested with a stubbed load_dataset).
def _csqa_hub(rec: dict[str, Any], id_: str) -> Example:
    ch = rec["choices"]
    choices = ", ".join(f"({label}) {text}" for label, text in zip(ch["label"], ch["text"]))
    return Example(id=id_, question=f"{rec['question']} Answer choices: {choices}.", answer=rec["answerKey"])


def _svamp_hub(rec: dict[str, Any], id_: str) -> Example:
    body = rec["Body"].strip()
    sep = " " if body.endswith(".") else ". "
    return Example(id=id_, question=f"{body}{sep}{rec['Question'].strip()}", answer=str(float(rec["Answer"])))


register_hub(
    "gsm8k", HubSpec("openai/gsm8k", "main", {"train": "train", "test": "test"}, lambda r, i: gsm8k_example(r, i))
)
register_hub(
    "aqua", HubSpec("deepmind/aqua_rat", "raw", {"train": "train", "test": "test"}, lambda r, i: aqua_example(r, i))
)
register_hub(
    "commonsense_qa", HubSpec("tau/commonsense_qa", None, {"train": "train", "test": "validation"}, _csqa_hub)
)
register_hub("svamp", HubSpec("ChilleD/SVAMP", None, {"train": "train", "test": "test"}, _svamp_hub))
