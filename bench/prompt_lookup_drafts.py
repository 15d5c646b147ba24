"""Greedy evaluation with prompt-lookup drafts (4 tokens checked per step) against one token per step, bf16.

Whether drafts pay depends on what a step that checks 5 positions a row costs against a one-token step, which depends
on the CPU and on how many rows are busy. Three settings: drafts at every step (``always``), drafts only while at most
``HFBackend``'s default ``draft_rows`` for this CPU are busy (``default``; the same as always on a CPU with AMX tiles),
and none. Measured on whole evaluations (``run_eval``, the backend loaded once per workload, the model's dtype
``auto``: bf16 where the CPU multiplies bf16 natively):

* ``gsm8k``: zero-shot-CoT on the first N GSM8K test questions, SmolLM2-135M-Instruct (Q4_1 GGUF), 16 slots,
  256 new tokens (bench/eval_vs_lmeval.py's settings);
* ``gsm8k_4_slots``: the same at 4 slots, a third of the questions (few rows busy: a server with a few clients);
* ``coin_flip``: the quickstart's zero-shot-CoT baseline (chat template, 2N questions up to 100, 50 slots, 128
  tokens);
* ``student``: the quickstart's diverse Fine-tune-CoT student (``--student``, after ``make quickstart``).

Runs go always, default, none, none, default, always per workload (each into a new output folder: no request
cache); each setting's two runs are reported, with decoding steps, accuracy and how many texts equal none's.

    .venv/bin/python bench/prompt_lookup_drafts.py --out bench/results/prompt_lookup_drafts_zen4
    .venv/bin/python bench/prompt_lookup_drafts.py --questions 4 --out "$(mktemp -d)/drafts"   # smoke test
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paths import DATA, MODEL_DIR
from _results import environment, heading, write_results

DRAFTS = 4


def workloads(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each workload's EvalConfig fields."""
    found = {
        "gsm8k": dict(
            model=str(MODEL_DIR), tasks=["gsm8k"], data_dir=str(DATA), mode="zero_shot_cot_single",
            limit=args.questions, batch_size=16,
        ),
        "coin_flip": dict(
            model=str(MODEL_DIR), tasks=["synthetic_coin_flip:k=4"], mode="zero_shot_cot", chat=True,
            limit=min(100, 2 * args.questions), batch_size=50, max_tokens=128,
        ),
    }  # fmt: skip
    found["gsm8k_4_slots"] = {**found["gsm8k"], "limit": max(1, args.questions // 3), "batch_size": 4}
    if args.student:
        found["student"] = dict(
            model=args.student, tasks=["synthetic_coin_flip:k=4"], mode="finetune_cot",
            limit=min(100, 2 * args.questions), batch_size=50, max_tokens=128,
        )  # fmt: skip
    return found


def workload_arguments(p: argparse.ArgumentParser) -> None:
    """The options :func:`workloads` reads."""
    p.add_argument("--questions", type=int, default=48, help="GSM8K questions (coin flip: twice as many, <= 100)")
    p.add_argument("--student", help="a quickstart student, e.g. runs/quickstart/students/finetune_cot_diverse")


def evaluate(backend: Any, fields: dict[str, Any], setting: tuple[int, int | None], workdir: Path) -> dict[str, Any]:
    """One evaluation with ``setting`` = (lookahead, draft_rows): seconds (model loaded), steps, accuracy, texts."""
    from cotbridge.evaluation.run import EvalConfig, run_eval
    from cotbridge.jsonl import read_jsonl

    out = Path(tempfile.mkdtemp(dir=workdir))
    cfg = EvalConfig(**fields, split="test", output=str(out))
    backend.lookahead, backend.draft_rows = setting
    steps = 0
    generate = backend.generate

    def counted(*a: Any, **kw: Any) -> Any:
        nonlocal steps
        result = generate(*a, **kw)
        steps += backend.stats.get("steps", 0)
        return result

    backend.generate = counted
    t0 = time.perf_counter()
    try:
        summary = run_eval(cfg, backend=backend, progress=False)
    finally:
        backend.generate = generate
    seconds = time.perf_counter() - t0
    task = next(iter(summary["results"]))
    records = list(read_jsonl(next(out.glob("*.jsonl"))))
    return {
        "s": seconds,
        "steps": steps,
        "accuracy": summary["results"][task]["accuracy"],
        "texts": [s["output"] for r in records for s in r["samples"]],
    }


def measure(fields: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from cotbridge.backends import get_backend
    from cotbridge.backends.hf import drafting_rows

    backend = get_backend("hf", model=fields["model"], batch_size=fields["batch_size"])
    settings = {"always": (DRAFTS, None), "default": (DRAFTS, drafting_rows(backend.model)), "none": (0, None)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    for name in [*settings, *reversed(settings)]:
        runs[name].append(evaluate(backend, fields, settings[name], workdir))
        print(f"  {name}: {runs[name][-1]['s']:.1f} s", file=sys.stderr)
    mean = {name: sum(r["s"] for r in rs) / len(rs) for name, rs in runs.items()}
    return {
        "dtype": str(backend.model.dtype).removeprefix("torch."),
        "questions": fields["limit"],
        "slots": fields["batch_size"],
        "default_draft_rows": settings["default"][1],
        "settings": {
            name: {
                "s": [round(r["s"], 2) for r in rs],
                "over_none": round(mean[name] / mean["none"], 3),
                "steps": rs[0]["steps"],
                "accuracy": rs[0]["accuracy"],
                "same_texts_as_none": sum(a == b for a, b in zip(rs[0]["texts"], runs["none"][0]["texts"])),
                "repeatable": rs[0]["texts"] == rs[1]["texts"],
            }
            for name, rs in runs.items()
        },
        "texts": len(runs["none"][0]["texts"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(p)
    p.add_argument("--workloads", nargs="+", help="only these (default: all)")
    p.add_argument("--out", default="bench/results/prompt_lookup_drafts")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in workloads(args).items():
            if args.workloads and name not in args.workloads:
                continue
            print(f"{name} ...", file=sys.stderr)
            results[name] = measure(fields, Path(tmp))
    result = {
        "command": "python bench/prompt_lookup_drafts.py " + shlex.join(sys.argv[1:]),
        **environment(),
        "drafts": DRAFTS,
        "workloads": results,
    }
    write_results(args.out, result, render)


def render(r: dict[str, Any]) -> str:
    out = [
        *heading(r, "Greedy evaluation: prompt-lookup drafts vs one token per step"),
        f"{r['drafts']} drafts a step: at every step (always), while at most the CPU's default number of rows are "
        "busy (default), or none. Runs go always, default, none, none, default, always (the backend loaded once per "
        "workload, model loading not timed); seconds are each setting's two runs.",
        "",
        "| workload | dtype | questions | slots | setting | seconds | / none | steps | accuracy | texts as none's |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, w in r["workloads"].items():
        for setting, m in w["settings"].items():
            label = f"default ({w['default_draft_rows']} rows)" if setting == "default" else setting
            out.append(
                f"| {name} | {w['dtype']} | {w['questions']} | {w['slots']} | {label} | "
                f"{' / '.join(map(str, m['s']))} | **{m['over_none']}** | {m['steps']} | {m['accuracy']:.0%} "
                f"| {m['same_texts_as_none']}/{w['texts']} |"
            )
    out += [
        "",
        "/ none above 1: drafts cost more than they save. Texts: in bf16 a step that checks 5 positions a row rounds "
        "differently from a one-token step, so greedy texts part from none's (in fp32 they stay equal).",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
