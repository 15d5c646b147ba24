"""Self-consistency through cotbridge's evaluation path: the previous generation path against slot decoding.

Same model (SmolLM2-135M-Instruct Q4_1 GGUF from ../shared/data), same questions (the first N GSM8K test
questions), same prompt mode (two-stage zero-shot-CoT: rationale, then "Therefore, the answer is"), same sampling
(k samples per question, temperature 0.7, top-p 1, seed 0), measured one after the other in one run, each path at
the same batch sizes (sequences in flight; 16 is `cotbridge eval`'s default):

* ``batches fp32`` — the path before slot decoding: transformers' generate() with num_return_sequences=k on
  length-sorted batches (each prompt copied and pre-filled k times, a batch runs until its longest row ends),
  fp32 weights (the CPU default then);
* ``slots bf16`` — slot decoding (each prompt pre-filled once, finished rows refilled) with bf16 weights, the
  default on a CPU with native bf16 (AMX / AVX512-BF16). Session 6 also measured slot decoding in fp32 at batch 16:
  1.05x (bench/results/self_consistency_speed.md in git history, commit 1c5f62d).

Samples differ between the paths (each path has its own random stream), so accuracy is compared as a figure,
not sample by sample. Writes bench/results/self_consistency_speed.{json,md}.

    .venv/bin/python bench/self_consistency_speed.py                  # 16 questions x k=8 (several minutes)
    .venv/bin/python bench/self_consistency_speed.py --questions 2    # smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from _paths import DATA, MODEL_DIR, ROOT
from _results import write_results

PATHS = (("batches fp32", "batches", "float32"), ("slots bf16", "slots", "bfloat16"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("-k", type=int, default=8)
    ap.add_argument("--batch-sizes", default="16,64", help="comma-separated; every path runs at each")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "self_consistency_speed"))
    args = ap.parse_args()

    import torch
    import transformers

    from cotbridge.backends.hf import HFBackend
    from cotbridge.evaluation.scoring import Decoding, evaluate_examples
    from cotbridge.models.loading import cpu_has_native_bf16, load_model_and_tokenizer
    from cotbridge.prompts.modes import PromptContext
    from cotbridge.tasks import parse_task_spec

    task, params = parse_task_spec("gsm8k")
    examples = task.load("test", str(DATA), **params)[: args.questions]
    dec = Decoding(k=args.k, temperature=0.7, top_p=1.0, seed=0)
    models = {dtype: load_model_and_tokenizer(str(MODEL_DIR), dtype=dtype) for dtype in ("float32", "bfloat16")}
    load_before = os.getloadavg()
    arms = {}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    for (path, decoding, dtype), batch_size in [(p, b) for b in batch_sizes for p in PATHS]:
        name = f"{path}, batch {batch_size}"
        model, tok = models[dtype]
        backend = HFBackend(str(MODEL_DIR), model_obj=model, tokenizer=tok, batch_size=batch_size, decoding=decoding)
        t0 = time.perf_counter()
        records, metrics = evaluate_examples(
            task, examples, backend, "zero_shot_cot", PromptContext(task=task), dec, progress=False
        )
        seconds = time.perf_counter() - t0
        samples = [s for r in records for s in r["samples"]]
        arms[name] = {
            "path": path,
            "batch_size": batch_size,
            "decoding": decoding,
            "dtype": dtype,
            "seconds": round(seconds, 2),
            "accuracy": round(100 * metrics["accuracy"], 1),
            "samples": len(samples),
            "rationale_tokens": sum(s["usage"]["completion_tokens"] for s in samples),
            "distinct_answers_per_question": round(
                sum(len({s.get("prediction") for s in r["samples"]}) for r in records) / len(records), 2
            ),
        }
        print(f"{name}: {seconds:.1f}s, accuracy {arms[name]['accuracy']}%", flush=True)
    baseline = {a["batch_size"]: a["seconds"] for a in arms.values() if a["path"] == "batches fp32"}
    default = baseline[batch_sizes[0]]  # the previous path at the first (default) batch size
    result = {
        "command": " ".join([".venv/bin/python", "bench/self_consistency_speed.py", *sys.argv[1:]]),
        "settings": {
            "model": str(MODEL_DIR.relative_to(ROOT.parent)) + " (Q4_1 GGUF, dequantised)",
            "task": f"gsm8k test, first {len(examples)} questions",
            "mode": "zero_shot_cot (two-stage)",
            "k": args.k,
            "temperature": 0.7,
            "top_p": 1.0,
            "batch_sizes": batch_sizes,
        },
        "machine": {
            "nproc": os.cpu_count(),
            "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "arms": arms,
        "speedup_same_batch": {n: round(baseline[a["batch_size"]] / a["seconds"], 2) for n, a in arms.items()},
        "speedup_over_default": {n: round(default / a["seconds"], 2) for n, a in arms.items()},
        "target": "slots bf16 >= 2x faster than batches fp32 at the same batch size",
    }
    result["met"] = {b: result["speedup_same_batch"][f"slots bf16, batch {b}"] >= 2.0 for b in batch_sizes}
    write_results(args.out, result, render)


def render(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# Self-consistency speed: generate() batches vs slot decoding",
        "",
        f"Command: `{r['command']}`",
        "",
        f"{s['model']}, {s['task']}, {s['mode']}, k={s['k']}, temperature {s['temperature']}, top-p {s['top_p']}, "
        f"batch sizes {s['batch_sizes']}. Machine: {r['machine']['nproc']} CPUs, native bf16 "
        f"{r['machine']['native_bf16']}, torch {r['machine']['torch']}, transformers {r['machine']['transformers']}; "
        f"load average before/after {r['machine']['loadavg_before'][0]} / {r['machine']['loadavg_after'][0]}.",
        "",
        "| path | batch | seconds | speed-up, same batch | speed-up over batches fp32 at batch "
        f"{s['batch_sizes'][0]} | majority-vote accuracy | distinct answers / question |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in r["arms"].items():
        lines.append(
            f"| {a['path']} | {a['batch_size']} | {a['seconds']} | {r['speedup_same_batch'][name]}x | "
            f"{r['speedup_over_default'][name]}x | {a['accuracy']}% | {a['distinct_answers_per_question']} |"
        )
    met = ", ".join(f"batch {b}: {'met' if ok else 'not met'}" for b, ok in r["met"].items())
    lines += ["", f"Target: {r['target']} ({met}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
