"""HotpotQA and 2WikiMultiHopQA: multi-hop extractive QA with context paragraphs.

Locally these read the 500-question dev subsets in ``<data_dir>/multihop/`` (IRCoT's HotpotQA
format and 2Wiki's native format). Offline there is no train split, so the 500 are split with a
fixed seed into 300 train / 200 test (version ``1.0-local``); the hub copy uses train / validation.
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

LOCAL_TEST_SIZE = 200
LOCAL_SPLIT_SEED = 0


def format_context(paragraphs: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"{title}: {text.strip()}" for title, text in paragraphs)


def hotpot_ircot_example(rec: dict[str, Any], path: object, line: int) -> Example:
    try:
        spans = rec["answers_objects"][0]["spans"]
        paragraphs = [(c["title"], c["paragraph_text"]) for c in rec["contexts"]]
        supporting = [c["title"] for c in rec["contexts"] if c.get("is_supporting")]
        return Example(
            id=rec["question_id"],
            question=rec["question_text"],
            answer=spans[0],
            aliases=spans[1:],
            context=format_context(paragraphs),
            meta={"supporting_titles": supporting},
        )
    except (KeyError, IndexError, TypeError) as e:
        raise DataError(path, f"not an IRCoT-format HotpotQA record (missing {e})", line) from None


def twowiki_example(rec: dict[str, Any], path: object, line: int) -> Example:
    try:
        paragraphs = [(title, " ".join(sents)) for title, sents in rec["context"]]
        return Example(
            id=rec["_id"],
            question=rec["question"],
            answer=rec["answer"],
            context=format_context(paragraphs),
            meta={
                "type": rec.get("type"),
                "supporting_titles": sorted({t for t, _ in rec.get("supporting_facts", [])}),
            },
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"not a 2WikiMultihopQA record (missing {e})", line) from None


def local_split(examples: list[Example], split: str) -> list[Example]:
    order = list(range(len(examples)))
    random.Random(LOCAL_SPLIT_SEED).shuffle(order)
    test_idx = set(order[:LOCAL_TEST_SIZE])
    keep = (lambda i: i in test_idx) if split == "test" else (lambda i: i not in test_idx)
    return [ex for i, ex in enumerate(examples) if keep(i)]


def make_loader(
    task: str, filename: str, parse: Callable[[dict[str, Any], object, int], Example]
) -> Callable[..., list[Example]]:
    def load(data_dir: Path | None, split: str) -> list[Example]:
        if data_dir is None:
            return load_from_hub(task, split)
        path = next((p for p in (data_dir / "multihop" / filename, data_dir / filename) if p.is_file()), None)
        if path is None:
            raise UserError(f"task {task!r}: {filename} not found under {data_dir} or {data_dir / 'multihop'}")
        examples = [parse(rec, path, i + 1) for i, rec in enumerate(read_jsonl(path))]
        return local_split(examples, split)

    return load


for _name, _file, _parse in (
    ("hotpotqa", "hotpotqa_dev_subsampled_ircot500.jsonl", hotpot_ircot_example),
    ("2wikimultihopqa", "2wikimultihopqa_dev_sample500.jsonl", twowiki_example),
):
    register_task(
        Task(
            name=_name,
            version="1.0-local",
            answer_type="span",
            loader=make_loader(_name, _file, _parse),
            sizes={"train": 500 - LOCAL_TEST_SIZE, "test": LOCAL_TEST_SIZE},
            family="multihop",
            description=f"{_name} multi-hop QA with context paragraphs (local 500-question dev subset, seeded split)",
        )
    )


def _hotpot_hub(rec: dict[str, Any], id_: str) -> Example:
    ctx = rec["context"]
    paragraphs = [(t, " ".join(s)) for t, s in zip(ctx["title"], ctx["sentences"])]
    return Example(
        id=rec.get("id", id_), question=rec["question"], answer=rec["answer"], context=format_context(paragraphs)
    )


register_hub(
    "hotpotqa", HubSpec("hotpotqa/hotpot_qa", "distractor", {"train": "train", "test": "validation"}, _hotpot_hub)
)
