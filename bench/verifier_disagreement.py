"""Regex rules vs math-verify on released teacher outputs: every output scored by the task's own extraction rules
and by the math answer type (math-verify), counted cell by cell, with examples of each disagreement.

Run: .venv/bin/python bench/verifier_disagreement.py   (writes bench/results/verifier_disagreement.{json,md})
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _paths import ROOT
from _results import write_results
from cotbridge.evaluation.predictions import score_predictions
from score_released_outputs import FILES as RELEASED
from score_released_outputs import RE2

# the released files of score_released_outputs.py whose answers are numbers (math-verify says nothing on letters)
FILES = [f for f in RELEASED if f[0] != "commonsense_qa"]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, filename, gold in FILES:
            for generation in ("cot", "vanilla"):
                s = score_predictions(
                    task,
                    RE2 / filename,
                    f"{generation}.generation.0",
                    Path(tmp) / f"{filename}.{generation}",
                    gold_field=gold,
                    compare_checker="math",
                )
                m = s["results"][task]
                rows.append({"file": filename, "generation": generation, "n": m["n"], **m["checker_table"]})
    write_results(ROOT / "bench" / "results" / "verifier_disagreement", {"rows": rows}, render)


def render(r: dict) -> str:
    lines = [
        "# Task rules (regex) vs math-verify on released teacher outputs",
        "",
        "Each output scored twice: by the task's extraction rules (number answers) and by the `math` answer type "
        "(math-verify's equivalence on the boxed / 'the answer is' / last $...$ or number).",
        "",
        "| file | generation | n | both right | only rules | only math-verify | both wrong |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['file']} | {x['generation']} | {x['n']} | {x['both_correct']} | {x['only_rules']} | "
            f"{x['only_checker']} | {x['both_wrong']} |"
        )
    lines += ["", "Disagreements (gold; what the rules read; what math-verify read):", ""]
    for x in r["rows"]:
        for kind, label in (("only_rules", "only the rules right"), ("only_checker", "only math-verify right")):
            for ex in x["examples"][kind][:2]:
                lines.append(
                    f"- {x['file']} {x['generation']} id {ex['id']} ({label}): gold {ex['gold']}; "
                    f"rules {ex['rules']!r}; math-verify {ex['checker']!r}"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
