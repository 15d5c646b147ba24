"""Training step time with and without cotbridge's allocator setting (cotbridge/allocator.py), one run.

Each arm is a fresh process (glibc reads the setting once), same model, data and steps: SmolLM2-135M-Instruct,
LoRA r16 on all linear layers, the trainer's default precision, batch 8, gpt-3.5-turbo GSM8K rationales in the
Fine-tune-CoT format (as bench/training_throughput.py). "tuned" sets COTBRIDGE_MALLOC=heap; "glibc" leaves
the allocator alone. Arms run in ABBA order; wall, user and kernel CPU seconds and minor page faults are
counted around trainer.train() only. Writes bench/results/allocator_training.{json,md}.

    .venv/bin/python bench/allocator_training.py              # 8 steps per run, ABBA (~5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _paths import ROOT
from _results import write_results

RESULTS = ROOT / "bench" / "results"
ARMS = {"tuned": "heap", "glibc": None}  # COTBRIDGE_MALLOC per arm


def child(steps: int, batch_size: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.config import TrainConfig, use_bf16
    from cotbridge.train.sft import build_trainer
    from training_throughput import rationale_examples

    cfg = TrainConfig(
        model="smollm2-135m-instruct",
        lora=True,
        lora_r=16,
        lora_alpha=32,
        lr=1e-4,
        epochs=1,
        max_steps=steps,
        batch_size=batch_size,
        save_strategy="no",
        logging_steps=1000,
        resume=False,
        output_dir=tempfile.mkdtemp(prefix="alloc_bench_"),
    )
    model, tok = load_model_and_tokenizer(cfg.model)
    trainer = build_trainer(cfg, rationale_examples(steps * batch_size), model, tok)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    trainer.train()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": round(wall, 2),
        "user_s": round(r1.ru_utime - r0.ru_utime, 2),
        "sys_s": round(r1.ru_stime - r0.ru_stime, 2),
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
        "precision": "bf16 autocast" if use_bf16("auto") else "fp32",
    }


def render(r: dict) -> str:
    lines = [
        "# Training with and without the allocator setting",
        "",
        f"SmolLM2-135M-Instruct LoRA r16, {r['steps']} steps of batch {r['batch_size']} per run "
        f"({r['runs'][0]['precision']}), arms in order {' '.join(x['arm'] for x in r['runs'])}, each a fresh process.",
        "",
        "| run | arm | train wall s | user CPU s | kernel CPU s | minor page faults |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {x['arm']} | {x['wall_s']} | {x['user_s']} | {x['sys_s']} | {x['minor_faults']} |"
        for i, x in enumerate(r["runs"], 1)
    ]
    s = r["summary"]
    lines += [
        "",
        f"Mean train wall time: glibc default {s['glibc_wall_s']} s, tuned {s['tuned_wall_s']} s → "
        f"**{s['speedup']:.2f}×** faster; page faults {s['glibc_faults']:.0f} → {s['tuned_faults']:.0f}.",
        "",
        f"Command: `{r['command']}`; {r['platform']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--order", default="tuned,glibc,glibc,tuned")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "allocator_training"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.batch_size)))
        return
    runs = []
    for i, arm in enumerate(args.order.split(","), 1):
        env = {k: v for k, v in os.environ.items() if k != "COTBRIDGE_MALLOC"}
        if ARMS[arm]:
            env["COTBRIDGE_MALLOC"] = ARMS[arm]
        print(f"run {i}: {arm} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--steps", str(args.steps), "--batch-size", str(args.batch_size)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append({"arm": arm, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"  {runs[-1]}", file=sys.stderr, flush=True)

    def mean(arm: str, key: str) -> float:
        return round(statistics.mean(x[key] for x in runs if x["arm"] == arm), 2)

    summary = {
        "tuned_wall_s": mean("tuned", "wall_s"),
        "glibc_wall_s": mean("glibc", "wall_s"),
        "tuned_faults": mean("tuned", "minor_faults"),
        "glibc_faults": mean("glibc", "minor_faults"),
    }
    summary["speedup"] = round(summary["glibc_wall_s"] / summary["tuned_wall_s"], 3)
    result = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "runs": runs,
        "summary": summary,
        "command": "python bench/allocator_training.py " + " ".join(sys.argv[1:]),
        "platform": platform.platform(),
    }
    write_results(args.out, result, render)


if __name__ == "__main__":
    main()
