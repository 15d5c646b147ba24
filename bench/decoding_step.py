"""Slot decoding through the registered decoding step (backends/decoding_step.py) against through ``model()``.

The registered step calls a Llama-family model's own modules in the order its forward does, without transformers'
per-call plumbing, and multiplies a layer's query/key/value and gate/up as one stacked product each
(models/stacked_projections.py). The two settings must give the same texts (same bits); what differs is the time.
Whole evaluations (``run_eval``, the backend loaded once per workload), order step, model(), model(), step
(``--rounds`` times); the workloads are bench/prompt_lookup_drafts.py's (GSM8K zero-shot-CoT at 16 slots, the
quickstart's coin-flip baseline and, with ``--student``, its diverse Fine-tune-CoT student at 50 slots), with drafts
as the backend's default for the CPU.

    .venv/bin/python bench/decoding_step.py --student runs/quickstart/students/finetune_cot_diverse \\
        --out bench/results/decoding_step_zen4
    .venv/bin/python bench/decoding_step.py --questions 4 --workloads gsm8k --out "$(mktemp -d)/step"   # smoke test
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import environment, heading, write_results
from prompt_lookup_drafts import evaluate, workload_arguments, workloads


def measure(fields: dict[str, Any], dtype: str, workdir: Path, rounds: int) -> dict[str, Any]:
    from cotbridge.backends import decoding_step, get_backend

    backend = get_backend("hf", model=fields["model"], batch_size=fields["batch_size"], dtype=dtype)
    drafts = (backend.lookahead, backend.draft_rows)
    registered = dict(decoding_step.STEPS)
    settings = {"step": registered, "model()": {}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    try:
        for name in ["step", "model()", "model()", "step"] * rounds:
            decoding_step.STEPS.clear()
            decoding_step.STEPS.update(settings[name])
            runs[name].append(evaluate(backend, fields, drafts, workdir))
            print(f"  {name}: {runs[name][-1]['s']:.1f} s", file=sys.stderr)
    finally:
        decoding_step.STEPS.clear()
        decoding_step.STEPS.update(registered)
    verdicts = decoding_step._SAME_BITS.get(backend.model, {})  # per attention implementation: step used
    mean = {name: sum(r["s"] for r in rs) / len(rs) for name, rs in runs.items()}
    return {
        "dtype": str(backend.model.dtype).removeprefix("torch."),
        "questions": fields["limit"],
        "slots": fields["batch_size"],
        "step_used": bool(verdicts) and all(verdicts.values()),
        "seconds": {name: [round(r["s"], 2) for r in rs] for name, rs in runs.items()},
        "step_over_model": round(mean["step"] / mean["model()"], 3),
        "steps": runs["step"][0]["steps"],
        "accuracy": runs["step"][0]["accuracy"],
        "same_texts": sum(a == b for a, b in zip(runs["step"][0]["texts"], runs["model()"][0]["texts"])),
        "texts": len(runs["step"][0]["texts"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(p)
    p.add_argument("--workloads", nargs="+", help="only these (default: all but gsm8k_4_slots)")
    p.add_argument("--rounds", type=int, default=1, help="rounds of step, model(), model(), step per workload")
    p.add_argument("--dtypes", nargs="+", default=["auto"], help="the backend's dtype(s): auto, float32, bfloat16")
    p.add_argument("--out", default="bench/results/decoding_step")
    args = p.parse_args()
    chosen = args.workloads or ["gsm8k", "coin_flip", "student"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in workloads(args).items():
            for dtype in args.dtypes if name in chosen else []:
                print(f"{name} {dtype} ...", file=sys.stderr)
                results[f"{name} {dtype}"] = measure(fields, dtype, Path(tmp), args.rounds)
    result = {"command": "python bench/decoding_step.py " + shlex.join(sys.argv[1:]), **environment(), "runs": results}
    write_results(args.out, result, render)


def render(r: dict[str, Any]) -> str:
    out = [
        *heading(r, "Slot decoding: the registered decoding step vs model()"),
        "Whole evaluations, the backend loaded once per workload (loading not timed), order step, model(), model(), "
        "step (repeated in some runs); seconds are each setting's runs, step / model() the ratio of their means.",
        "",
        "| workload | dtype | questions | slots | step used | step s | model() s | step / model() | steps | accuracy "
        "| same texts |",
        "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for name, w in r["runs"].items():
        out.append(
            f"| {name.split()[0]} | {w['dtype']} | {w['questions']} | {w['slots']} | {w['step_used']} | "
            f"{' / '.join(map(str, w['seconds']['step']))} | {' / '.join(map(str, w['seconds']['model()']))} | "
            f"**{w['step_over_model']}** | {w['steps']} | {w['accuracy']:.0%} | {w['same_texts']}/{w['texts']} |"
        )
    out += ["", "Same texts: the step's must all equal model()'s (the same operations on the same inputs).", ""]
    return "\n".join(out)


if __name__ == "__main__":
    main()
