"""LM-guided CoT's ``kd`` data: the large model's training rationales, curated (exact match, or a minimum answer F1
against every gold alias), as prompt/completion rows for the small writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.jsonl import read_jsonl, write_json, write_jsonl
from cotbridge.recipes.lm_guided.config import KDSpec
from cotbridge.recipes.lm_guided.inference import small_prompt
from cotbridge.recipes.lm_guided.resources import TaskData


def kd_examples(kd: KDSpec, data: TaskData, teacher_records: dict[str, Path], out: Path) -> list[dict[str, Any]]:
    """Writes ``out/kd.jsonl`` (the rows) and ``out/curation.json`` (what each filter kept, per task)."""
    from cotbridge.curate import CurateSettings, curate
    from cotbridge.prompts.formats import clean_rationale

    rows, stats = [], {}
    settings = CurateSettings(filters=list(kd.filters))
    if kd.min_f1 is not None:  # graded correctness: F1 of the large model's answer against every gold alias
        settings.filters = [f for f in settings.filters if f != "correct"] + ["answer_f1"]
        settings.min_answer_f1 = kd.min_f1
    for task in data.tasks:
        by_id = {ex.id: ex for ex in data.examples(task, "train", kd.train_limit)}
        records = [
            {**r, "golds": by_id[r["example_id"]].golds}
            for r in read_jsonl(teacher_records[task.name])
            if r["example_id"] in by_id
        ]
        kept, st = curate(records, settings)
        stats[task.name] = {**st, "min_f1": kd.min_f1}
        rows += [
            {
                "prompt": small_prompt(by_id[r["example_id"]]),
                "completion": " " + clean_rationale(r["rationale"]),
                "task": task.name,
                "example_id": r["example_id"],
                "sample": r["sample"],
            }
            for r in kept
        ]
    write_json(out / "curation.json", stats)
    write_jsonl(out / "kd.jsonl", rows)
    return rows
