"""Loading tasks from public Hugging Face hub copies (needs network; offline runs use --data-dir).

Each spec maps a hub dataset's fields onto Example. Only copies whose fields we know are listed;
the rest of the Fine-tune-CoT tasks need the unified data directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cotbridge.errors import UserError
from cotbridge.tasks.base import Example


@dataclass(frozen=True)
class HubSpec:
    path: str
    config: str | None
    splits: dict[str, str]  # our split -> hub split
    to_example: Callable[[dict[str, Any], str], Example]


def _gsm8k(rec: dict[str, Any], id_: str) -> Example:
    from cotbridge.tasks.finetune_cot import gsm8k_example

    return gsm8k_example(rec, id_)


def _aqua(rec: dict[str, Any], id_: str) -> Example:
    from cotbridge.tasks.finetune_cot import aqua_example

    return aqua_example(rec, id_)


def _csqa(rec: dict[str, Any], id_: str) -> Example:
    ch = rec["choices"]
    choices = ", ".join(f"({label}) {text}" for label, text in zip(ch["label"], ch["text"]))
    return Example(id=id_, question=f"{rec['question']} Answer choices: {choices}.", answer=rec["answerKey"])


def _svamp(rec: dict[str, Any], id_: str) -> Example:
    body = rec["Body"].strip()
    sep = " " if body.endswith(".") else ". "
    return Example(id=id_, question=f"{body}{sep}{rec['Question'].strip()}", answer=str(float(rec["Answer"])))


def _hotpot(rec: dict[str, Any], id_: str) -> Example:
    from cotbridge.tasks.multihop import format_context

    ctx = rec["context"]
    paragraphs = [(t, " ".join(s)) for t, s in zip(ctx["title"], ctx["sentences"])]
    return Example(id=rec.get("id", id_), question=rec["question"], answer=rec["answer"], context=format_context(paragraphs))


HUB_SPECS: dict[str, HubSpec] = {
    "gsm8k": HubSpec("openai/gsm8k", "main", {"train": "train", "test": "test"}, _gsm8k),
    "aqua": HubSpec("deepmind/aqua_rat", "raw", {"train": "train", "test": "test"}, _aqua),
    "commonsense_qa": HubSpec("tau/commonsense_qa", None, {"train": "train", "test": "validation"}, _csqa),
    "svamp": HubSpec("ChilleD/SVAMP", None, {"train": "train", "test": "test"}, _svamp),
    "hotpotqa": HubSpec("hotpotqa/hotpot_qa", "distractor", {"train": "train", "test": "validation"}, _hotpot),
}


def load_from_hub(task: str, split: str) -> list[Example]:
    spec = HUB_SPECS.get(task)
    if spec is None:
        raise UserError(f"task {task!r} has no known hub copy: pass --data-dir (or set COTBRIDGE_DATA_DIR) "
                        "to a folder in the Fine-tune-CoT layout")
    import datasets  # heavy import, only when a hub load is asked for

    try:
        rows = datasets.load_dataset(spec.path, spec.config, split=spec.splits[split])
    except Exception as e:  # network, auth or missing-dataset errors all end the same way for the user
        raise UserError(f"could not load {spec.path} from the hub ({type(e).__name__}: {e}); "
                        "offline, pass --data-dir") from None
    return [spec.to_example(dict(r), str(i)) for i, r in enumerate(rows)]
