"""How fast exact (fp32) greedy decoding can get on this CPU: what bounds it, and the variants that keep its outputs.

``bench/eval_vs_lmeval.py`` asks for cotbridge <= 0.5x lm-eval's time with >= 95% of answers agreeing. bf16 is fast
enough (0.40x) but a 135M model's 256-token greedy texts diverge under bf16 rounding (42% agreement); fp32 agrees
(100% identical texts) at 0.85x. This bench measures, side by side in one run:

* the machine: fp32 and bf16 matrix-product peaks (2048^3) and memory read bandwidth;
* one decoding step's linear products (SmolLM2-135M's 211 weights, 16 rows): fp32 ``F.linear`` (MKL), fp32 with
  MKL-packed weights (same bits; memory of the packed copies), fp32 with oneDNN-packed weights (other rounding),
  bf16 plain and oneDNN-packed;
* end to end, fp32 slot decoding of the first N GSM8K questions (16 slots, 160 new tokens): one token per step,
  prompt-lookup drafts of 1 and 2 tokens (plain weights), and the packed weights HFBackend uses in fp32
  (models/prepacked_linear.py: MKL's when this file's results were written, oneDNN's since where a row's bits do
  not depend on the rows beside it), with how many texts equal the plain run's.

Writes bench/results/fp32_decode_ceiling.{json,md}.

    .venv/bin/python bench/fp32_decode_ceiling.py                  # 32 questions (about 5 minutes)
    .venv/bin/python bench/fp32_decode_ceiling.py --questions 4    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from _paths import DATA, MODEL_DIR, ROOT
from _results import write_results
from prepacked_linear import generation, set_packed


def best_of(fn, reps: int, rounds: int = 3) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t) / reps)
    return min(times)


def machine(quick: bool) -> dict:
    import torch

    n = 1024 if quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    fp32 = 2 * n**3 / best_of(lambda: a @ b, 2) / 1e9
    ab, bb = a.bfloat16(), b.bfloat16()
    bf16 = 2 * n**3 / best_of(lambda: ab @ bb, 4) / 1e9
    mb = 64 if quick else 1024
    x = torch.randn(mb * 2**20 // 4)
    read = x.numel() * 4 / best_of(lambda: x.sum(), 3) / 1e9
    return {"fp32_gflops": round(fp32), "bf16_gflops": round(bf16), "read_gb_s": round(read, 1), "read_mb": mb}


def step_products(model, reps: int) -> dict:
    """One decoding step's linear products at 16 rows, in ms, per variant; and whether each variant's bits match."""
    import torch
    from torch.nn.functional import linear

    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {w.shape[1]: torch.randn(16, w.shape[1]) for w in weights}
    mkl = [torch.ops.mkl._mkl_reorder_linear_weight(w, 16) for w in weights]
    dnn = [torch.ops.mkldnn._reorder_linear_weight(w, 16) for w in weights]
    b16 = [w.bfloat16() for w in weights]
    b16p = [torch.ops.mkldnn._reorder_linear_weight(w, 16) for w in b16]
    xb = {k: v.bfloat16() for k, v in xs.items()}

    def run(variant):
        for i, w in enumerate(weights):
            x = xs[w.shape[1]]
            if variant == "fp32":
                linear(x, w)
            elif variant == "fp32 MKL-packed":
                torch.ops.mkl._mkl_linear(x, mkl[i], w, None, 16)
            elif variant == "fp32 oneDNN-packed":
                torch.ops.mkldnn._linear_pointwise(x, dnn[i], None, "none", [None], "")
            elif variant == "bf16":
                linear(xb[w.shape[1]], b16[i])
            else:
                torch.ops.mkldnn._linear_pointwise(xb[w.shape[1]], b16p[i], None, "none", [None], "")

    variants = ["fp32", "fp32 MKL-packed", "fp32 oneDNN-packed", "bf16", "bf16 oneDNN-packed"]
    ms = {v: round(best_of(lambda v=v: run(v), reps) * 1000, 2) for v in variants}
    w, x = weights[0], xs[weights[0].shape[1]]
    ref = linear(x, w)
    same = {
        "fp32 MKL-packed": torch.equal(ref, torch.ops.mkl._mkl_linear(x, mkl[0], w, None, 16)),
        "fp32 oneDNN-packed": torch.equal(
            ref, torch.ops.mkldnn._linear_pointwise(x, dnn[0], None, "none", [None], "")
        ),
    }
    flops = sum(2 * 16 * w.numel() for w in weights)
    return {
        "ms": ms,
        "gflops": {v: round(flops / (t / 1000) / 1e9) for v, t in ms.items()},
        "same_bits_as_fp32": same,
        "fp32_weights_mb": round(sum(w.numel() * 4 for w in weights) / 2**20),
        "mkl_packed_mb": round(sum(p.numel() * p.element_size() for p in mkl) / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fp32_decode_ceiling"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import HFBackend

    quick = args.questions < 16
    gguf = next(MODEL_DIR.glob("*.gguf"))
    lines = (DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[: args.questions]
    requests = [
        Request(prompt=f"Q: {json.loads(line)['question']}\nA: Let's think step by step.", max_tokens=160, stop=["Q:"])
        for line in lines
    ]
    result = {
        "command": "python bench/fp32_decode_ceiling.py" + (f" --questions {args.questions}" if quick else ""),
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}",
        "peaks": machine(quick),
    }
    backend = HFBackend(str(MODEL_DIR), gguf_file=gguf.name, dtype="float32", batch_size=16)
    result["step_products"] = step_products(backend.model, reps=3 if quick else 10)
    runs, reference = {}, None
    variants = [("one token per step", 0, False), ("drafts: 1", 1, False), ("drafts: 2", 2, False)]
    picked = next((m.packing.name for m in backend.model.modules() if hasattr(m, "packing")), "no")
    variants.append((f"{picked}-packed weights (HFBackend's default)", 0, True))
    backend.generate(requests[:2], progress=False)  # warm-up
    for name, lookahead, packed in variants:
        set_packed(backend.model, packed)
        backend.lookahead = lookahead
        r = generation(backend, requests)
        texts = [cs[0] for cs in r["texts"]]
        reference = reference or texts
        runs[name] = {
            "s": round(r["s"], 2),
            "steps": r["steps"],
            "ms_per_step": round(1000 * r["s"] / r["steps"], 1),
            "identical": sum(a == b for a, b in zip(reference, texts)),
            "n": len(texts),
        }
    result["generation"] = runs
    write_results(args.out, result, render)


def render(r: dict) -> str:
    p, s = r["peaks"], r["step_products"]
    out = [
        "# Exact (fp32) greedy decoding on this CPU: what bounds it",
        "",
        f"Command: `{r['command']}`. {r['machine']}.",
        "",
        f"Machine: fp32 product peak {p['fp32_gflops']} GFLOP/s, bf16 {p['bf16_gflops']} GFLOP/s (AMX), summing a "
        f"{p['read_mb']} MB tensor {p['read_gb_s']} GB/s. SmolLM2-135M's fp32 weights: {s['fp32_weights_mb']} MB.",
        "",
        "## One decoding step's 211 linear products at 16 rows",
        "",
        "| variant | ms | GFLOP/s | same bits as fp32 |",
        "|---|---:|---:|---|",
    ]
    for v, ms in s["ms"].items():
        same = s["same_bits_as_fp32"].get(v, "yes" if v == "fp32" else "no (bf16)")
        out.append(f"| {v} | {ms} | {s['gflops'][v]} | {same} |")
    out += [
        "",
        f"MKL's packed copies take {s['mkl_packed_mb']} MB (the weights: {s['fp32_weights_mb']} MB), and serve one",
        "row count only.",
        "",
        "## fp32 slot decoding end to end (16 slots, 160 new tokens)",
        "",
        "| variant | seconds | steps | ms per step | texts identical to one token per step |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, g in r["generation"].items():
        out.append(f"| {name} | {g['s']} | {g['steps']} | {g['ms_per_step']} | {g['identical']}/{g['n']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
