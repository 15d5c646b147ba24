"""Student training throughput: length-grouped batches vs naive (random-order) padded batches, one run.

Same model (SmolLM2-135M-Instruct, LoRA r16 on all linear layers, bf16 autocast where the CPU has it), same data,
same settings; the only difference is TrainConfig.group_by_length. Data: real variable-length rationales,
gpt-3.5-turbo's zero-shot-CoT outputs on GSM8K (../shared/data/teacher_rationales/rereading_re2, the correct ones),
in the Fine-tune-CoT format (``{question} ###`` -> `` {rationale} --> {answer}``).

Both arms pad each batch to its longest example (TRL's collator). A forward hook counts the real
(attention-mask) tokens and the padded tokens each step actually computes; tokens/s = real tokens / train
runtime (model loading excluded). Arms run in ABBA order (grouped, naive, naive, grouped by default) so a
drift in machine load hits both alike; every run is reported. Each run is a fresh process, so none inherits
another's heap, and reports its peak RSS. Without --gradient-checkpointing a naive run of 256 examples at batch 16
grew past 24 GiB and was OOM-killed on this machine, alone in its process too. Writes
bench/results/training_throughput.{json,md}.

    # the committed figures (~26 min):
    .venv/bin/python bench/training_throughput.py --gradient-checkpointing --order naive,grouped
    .venv/bin/python bench/training_throughput.py                 # 256 examples, batch 16, ABBA (needs > 24 GiB RAM)
    .venv/bin/python bench/training_throughput.py --quick         # smoke test
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
from pathlib import Path
from typing import Any

from _paths import DATA, ROOT
from _results import write_results

SOURCE = DATA / "teacher_rationales" / "rereading_re2" / "gsm8k_test__gpt-3.5-turbo.jsonl"
RESULTS = ROOT / "bench" / "results"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def rationale_examples(n: int) -> list[dict[str, Any]]:
    """The first n correct gpt-3.5-turbo GSM8K rationales as Fine-tune-CoT prompt/completion pairs."""
    from cotbridge.jsonl import read_jsonl
    from cotbridge.prompts.formats import to_student_examples

    records = []
    for rec in read_jsonl(SOURCE):
        cot = rec.get("cot") or {}
        text = (cot.get("generation") or [None])[0]
        if text and cot.get("score") == 1:
            records.append(
                {
                    "question": rec["input"],
                    "rationale": text,
                    "gold": rec["target"],
                    "task": "gsm8k",
                    "example_id": rec["id"],
                    "sample": 0,
                }
            )
        if len(records) == n:
            break
    return to_student_examples(records, "finetune_cot", "number")


class TokenCounter:
    """Forward pre-hook on the base model: real and padded tokens of every training forward pass."""

    def __init__(self) -> None:
        self.real = self.padded = self.steps = 0

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is None:
            return
        self.padded += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.steps += 1


def one_run(arm: str, examples: list[dict[str, Any]], args: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.config import TrainConfig
    from cotbridge.train.sft import build_trainer

    cfg = TrainConfig(
        model=args.model,
        lora=True,
        lora_r=16,
        lora_alpha=32,
        lr=1e-4,
        epochs=1,
        batch_size=args.batch_size,
        group_by_length=(arm == "grouped"),
        packing=(arm == "packed"),  # padding-free: every computed token is a real one
        save_strategy="no",
        logging_steps=1000,
        resume=False,
        output_dir=out_dir,
        seed=args.seed,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    model, tok = load_model_and_tokenizer(cfg.model)
    trainer = build_trainer(cfg, examples, model, tok)
    counter = TokenCounter()
    handle = trainer.model.get_base_model().register_forward_pre_hook(counter, with_kwargs=True)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    handle.remove()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    return {
        "arm": arm,
        "seconds": round(seconds, 2),
        "steps": counter.steps,
        "real_tokens": counter.real,
        "padded_tokens": counter.padded,
        "padding_efficiency": round(counter.real / counter.padded, 4),
        "tokens_per_s": round(counter.real / seconds, 1),
        "computed_tokens_per_s": round(counter.padded / seconds, 1),
        "peak_rss_gb": round(peak_gb, 1),
    }


def run_in_fresh_process(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in its own interpreter, so no run inherits another's heap; its result comes back as a JSON line."""
    cmd = [
        sys.executable,
        __file__,
        "--single-run",
        arm,
        "--examples",
        str(args.examples),
        "--batch-size",
        str(args.batch_size),
        "--model",
        args.model,
        "--seed",
        str(args.seed),
    ]
    cmd += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr (progress bars) passes through
    if proc.returncode != 0:
        sys.exit(
            f"run {arm} failed with exit code {proc.returncode}"
            + (" (killed: out of memory?)" if proc.returncode in (-9, 137) else "")
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# Training throughput: length-grouped, naive padded and packed (padding-free) batches",
        "",
        f"Model `{s['model']}` (LoRA r16, all linear layers, {s.get('precision', 'fp32')}, "
        f"{'gradient checkpointing, ' if s.get('gradient_checkpointing') else ''}CPU, {s['threads']} threads), "
        f"{s['examples']} "
        f"Fine-tune-CoT examples from gpt-3.5-turbo GSM8K rationales ({s['mean_tokens']:.0f} tokens on average, "
        f"{s['min_tokens']}-{s['max_tokens']}), batch size {s['batch_size']}, one epoch per run, runs in order "
        f"{' '.join(s['order'])}.",
        "",
        "| run | arm | seconds | steps | real tokens | padded tokens | padding efficiency | real tokens/s "
        "| peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(r["runs"], 1):
        lines.append(
            f"| {i} | {run['arm']} | {run['seconds']} | {run['steps']} | {run['real_tokens']} | "
            f"{run['padded_tokens']} | {run['padding_efficiency']:.3f} | {run['tokens_per_s']} | "
            f"{run.get('peak_rss_gb', '—')} |"
        )
    t = r["summary"]
    arms = [k.removesuffix("_tokens_per_s") for k in t if k.endswith("_tokens_per_s")]
    lines += [
        "",
        "Mean real tokens/s: "
        + ", ".join(
            f"{a} **{t[f'{a}_tokens_per_s']}** (padding efficiency {t[f'{a}_padding_efficiency']:.3f}"
            + (f", {t[f'{a}_over_naive']:.2f}× naive)" if f"{a}_over_naive" in t else ")")
            for a in arms
        )
        + ".",
        "",
        f"Command: `{r['command']}`; {r['platform']}; torch {r['torch']}, transformers {r['transformers']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--examples",
        type=int,
        default=256,
        help=(
            "the grouped sampler needs many examples: with 48 at batch 16 its batches still hold "
            "0.70 padding efficiency"
        ),
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--order", default="grouped,naive,naive,grouped", help="comma-separated arms, run in this order")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="both arms: without it a batch of 16 x 640-token rows needs ~19 GB (one forward/backward: 10.8 GB "
        "peak without, 4.4 GB with, at about the same speed on this CPU)",
    )
    ap.add_argument("--quick", action="store_true", help="16 examples, batch 4, order grouped,naive")
    ap.add_argument("--out", default=str(RESULTS / "training_throughput"), help="output path without extension")
    ap.add_argument(
        "--runs-from-log",
        nargs="+",
        help="skip training: summarise the per-run dicts that runs printed to stderr, from these logs in order",
    )
    ap.add_argument(
        "--single-run", choices=["grouped", "naive", "packed"], help=argparse.SUPPRESS
    )  # the child of one run
    args = ap.parse_args()
    if args.quick:
        args.examples, args.batch_size, args.order = 16, 4, "grouped,naive"
    if args.single_run:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one_run(args.single_run, rationale_examples(args.examples), args, tmp)), flush=True)
        return
    import torch
    import transformers
    from transformers import AutoTokenizer

    from cotbridge.train.config import use_bf16

    examples = rationale_examples(args.examples)
    tok = AutoTokenizer.from_pretrained(DATA / "models" / "smollm2-135m-instruct-q4_1")
    lengths = [len(tok(e["prompt"] + e["completion"])["input_ids"]) for e in examples]
    order = args.order.split(",")
    runs = []
    if args.runs_from_log:  # each finished run was printed as "  {...}" (a Python dict literal)
        import ast

        lines = [
            line
            for log in args.runs_from_log
            for line in Path(log).read_text(encoding="utf-8", errors="replace").replace("\r", "\n").splitlines()
        ]
        runs = [ast.literal_eval(line.strip()) for line in lines if line.startswith("  {'arm'")]
        order = [r["arm"] for r in runs]
    for i, arm in enumerate(order if not runs else []):
        print(f"run {i + 1}/{len(order)}: {arm} ...", file=sys.stderr, flush=True)
        runs.append(run_in_fresh_process(arm, args))
        print(f"  {runs[-1]}", file=sys.stderr, flush=True)

    def mean(arm: str, key: str) -> float:
        return round(statistics.mean(r[key] for r in runs if r["arm"] == arm), 4)

    arms = list(dict.fromkeys(r["arm"] for r in runs))
    summary = {f"{a}_tokens_per_s": mean(a, "tokens_per_s") for a in arms}
    summary |= {f"{a}_padding_efficiency": mean(a, "padding_efficiency") for a in arms}
    if "naive" in arms:  # each arm against plain padded batches
        summary["ratio"] = round(summary.get("grouped_tokens_per_s", 0) / summary["naive_tokens_per_s"], 3)
        summary |= {
            f"{a}_over_naive": round(summary[f"{a}_tokens_per_s"] / summary["naive_tokens_per_s"], 3) for a in arms
        }
    result = {
        "settings": {
            "model": args.model,
            "examples": len(examples),
            "batch_size": args.batch_size,
            "order": order,
            "mean_tokens": statistics.mean(lengths),
            "min_tokens": min(lengths),
            "max_tokens": max(lengths),
            "threads": torch.get_num_threads(),
            "source": str(SOURCE.relative_to(DATA.parent)),
            "precision": "bf16 autocast" if use_bf16("auto") else "fp32",
            "gradient_checkpointing": args.gradient_checkpointing,
        },
        "runs": runs,
        "summary": summary,
        "command": "python bench/training_throughput.py " + " ".join(sys.argv[1:]),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    write_results(args.out, result, render)


if __name__ == "__main__":
    main()
