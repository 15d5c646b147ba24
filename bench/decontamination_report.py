"""Decontamination report: the shared GSM8K, SVAMP, MultiArith and StrategyQA train splits checked against the test
split of every registered task (13-gram, exact and fuzzy overlap; see src/cotbridge/decontaminate.py).

Run: .venv/bin/python bench/decontamination_report.py   (writes bench/results/decontamination.{json,md})
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _paths import DATA, ROOT
from _results import write_results
from cotbridge.decontaminate import build_index, decontaminate
from cotbridge.tasks import get_task

TASKS = ("gsm8k", "svamp", "multiarith", "strategy_qa")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DATA))
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--fuzzy", type=float, default=0.7)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "decontamination"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    index = build_index(data_dir=args.data_dir, n=args.ngram, fuzzy=args.fuzzy)
    rows = {}
    for name in TASKS:
        train = get_task(name).load("train", args.data_dir)
        records = [{"question": ex.question, "example_id": ex.id} for ex in train]
        _, dropped = decontaminate(records, index)
        first = [d["matches"][0] for d in dropped]
        rows[name] = {
            "train": len(train),
            "dropped": len(dropped),
            "by_kind": dict(Counter(m["kind"] for m in first)),
            "by_test_task": dict(Counter(m["task"] for m in first)),
            "examples": [
                {"train_id": d["example_id"], "train": d["question"], **d["matches"][0]} for d in dropped[:3]
            ],
        }
    result = {
        "ngram": args.ngram,
        "fuzzy": args.fuzzy,
        "test_questions": len(index.entries),
        "test_tasks": sorted({e[0] for e in index.entries}),
        "exact_only_tasks": sorted(index.exact_only),
        "skipped_tasks": index.skipped,
        "wall_s": round(time.perf_counter() - t0, 1),
        "train_splits": rows,
    }
    write_results(args.out, result, render)


def render(r: dict) -> str:
    lines = [
        "# Decontamination: shared train splits vs every registered task's test split",
        "",
        f"{r['test_questions']} test questions of {len(r['test_tasks'])} tasks; {r['ngram']}-gram overlap, exact "
        f"repeats, fuzzy (word-trigram Jaccard >= {r['fuzzy']}); templated tasks counted for exact repeats only "
        f"({', '.join(r['exact_only_tasks'])}); {r['wall_s']} s. A train question is counted once, by its first match "
        "(exact, then n-gram, then fuzzy).",
        "",
        "| train split | questions | overlapping | exact | 13-gram | fuzzy | matched test splits |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in r["train_splits"].items():
        k = row["by_kind"]
        tasks = ", ".join(f"{t} {n}" for t, n in sorted(row["by_test_task"].items(), key=lambda x: -x[1]))
        lines.append(
            f"| {name} | {row['train']} | {row['dropped']} ({100 * row['dropped'] / row['train']:.1f}%) | "
            f"{k.get('exact', 0)} | {k.get('ngram', 0)} | {k.get('fuzzy', 0)} | {tasks or '–'} |"
        )
    lines += ["", "Examples (train question → the test question it overlaps):", ""]
    for name, row in r["train_splits"].items():
        for ex in row["examples"][:2]:
            lines.append(
                f"- {name} {ex['train_id']} ({ex['kind']}, {ex['task']} test {ex['test_id']}): "
                f"“{ex['train'][:110]}” → “{ex['test_question'][:110]}”"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
