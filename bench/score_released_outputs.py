"""Score released teacher outputs with cotbridge's extraction and compare with each file's own scores.

Run: .venv/bin/python bench/score_released_outputs.py   (writes bench/results/score_released_outputs.{json,md})
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _paths import DATA, ROOT
from cotbridge.evaluation.predictions import score_predictions

RE2 = DATA / "teacher_rationales" / "rereading_re2"
FILES = [
    ("svamp", "svamp__gpt-4o-mini-2024-07-18.jsonl", "target"),
    ("gsm8k", "gsm8k_test__gpt-3.5-turbo.jsonl", "target"),
    ("commonsense_qa", "commonsenseqa_dev__gpt-3.5-turbo.jsonl", "answerKey"),
    ("gsm8k", "gsm8k_test__text-davinci-003.jsonl", "target"),
]


def main() -> None:
    rows, details = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, filename, gold in FILES:
            for generation in ("cot", "vanilla"):
                s = score_predictions(
                    task,
                    RE2 / filename,
                    f"{generation}.generation.0",
                    Path(tmp) / f"{filename}.{generation}",
                    gold_field=gold,
                    reference_field=f"{generation}.score",
                )
                m = s["results"][task]
                rows.append(
                    (
                        filename,
                        generation,
                        m["n"],
                        m["accuracy"],
                        m["reference_accuracy"],
                        m["agreement"],
                        len(s["disagreements"]),
                    )
                )
                details[f"{filename}:{generation}"] = {"metrics": m, "disagreements": s["disagreements"]}
    lines = [
        "| file | generation | n | cotbridge acc | file's own acc | agreement | disagreements |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {f} | {g} | {n} | {a:.3f} | {r:.3f} | {ag:.3%} | {d} |" for f, g, n, a, r, ag, d in rows]
    table = "\n".join(lines)
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "score_released_outputs.json").write_text(json.dumps(details, indent=1) + "\n")
    (out / "score_released_outputs.md").write_text(
        "# cotbridge extraction vs released per-record scores\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
