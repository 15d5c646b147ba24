"""bf16 generation on a CPU with linear weights packed once (models/prepacked_linear.py) against the plain path.

Same model object (SmolLM2-135M-Instruct Q4_1 GGUF from ../shared/data, loaded once in bf16), its linear layers
switched between ``nn.Linear`` (oneDNN reorders each weight at every product) and ``PrepackedLinear`` (packed once),
measured alternately (plain, packed, plain, packed; the faster of each pair's two runs is reported):

* each distinct linear shape of the model at 1, 16, 64 and 128 rows: microseconds per product, and whether the
  packed product has the same bits as ``F.linear``;
* greedy zero-shot-CoT on the first N GSM8K test questions (slot decoding, 16 slots, up to 160 new tokens, stop
  "Q:"), and self-consistency sampling (k=8, temperature 0.7) on the first N/4 of them: wall time, decoding steps,
  and how many completions are identical between the two paths;
* on the packed path, greedy decoding of the same questions up to 256 new tokens with prompt-lookup drafts (4 per
  step, checked in the same forward pass) against one token per step: time and identical completions.

Writes bench/results/prepacked_linear.{json,md}.

    .venv/bin/python bench/prepacked_linear.py                  # 32 questions (a few minutes)
    .venv/bin/python bench/prepacked_linear.py --questions 4    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from _paths import DATA, MODEL_DIR, ROOT
from _results import write_results


def set_packed(model, on: bool) -> None:
    """The model's linear layers as PrepackedLinear (their pack_rows as prepack_linears set them) or nn.Linear."""
    from torch import nn

    from cotbridge.models.prepacked_linear import PrepackedLinear

    for m in model.modules():
        if type(m) in (nn.Linear, PrepackedLinear):
            m.__class__ = PrepackedLinear if on else nn.Linear


def products(model, reps: int) -> list[dict]:
    import torch
    from torch import nn

    from cotbridge.models.prepacked_linear import PrepackedLinear

    shapes = {}
    for m in model.modules():
        if isinstance(m, nn.Linear):
            shapes.setdefault(tuple(m.weight.shape), m)
    rows = []
    for (n_out, n_in), layer in shapes.items():
        for n in (1, 16, 64, 128):
            x = torch.randn(n, n_in, dtype=layer.weight.dtype)
            timing = {}
            with torch.no_grad():
                for cls in (nn.Linear, PrepackedLinear, nn.Linear, PrepackedLinear):
                    layer.__class__ = cls
                    layer(x)
                    t = time.perf_counter()
                    for _ in range(reps):
                        out = layer(x)
                    us = (time.perf_counter() - t) / reps * 1e6
                    name = "packed" if cls is PrepackedLinear else "plain"
                    timing[name] = min(timing.get(name, us), us)
                    if cls is PrepackedLinear:
                        same = torch.equal(out, nn.functional.linear(x, layer.weight, layer.bias))
            rows.append({"shape": f"{n_out}x{n_in}", "rows": n, **timing, "same_bits": same})
    set_packed(model, True)
    return rows


def generation(backend, requests) -> dict:
    t = time.perf_counter()
    out = backend.generate(requests, progress=False)
    return {
        "s": time.perf_counter() - t,
        "steps": backend.stats["steps"],
        "texts": [[c.text for c in cs] for cs in out],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prepacked_linear"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import HFBackend
    from cotbridge.models.prepacked_linear import cpu_packs

    if not cpu_packs(torch.bfloat16):
        sys.exit("this CPU has no native bf16 in oneDNN: nothing to compare")
    gguf = next(MODEL_DIR.glob("*.gguf"))
    backend = HFBackend(str(MODEL_DIR), gguf_file=gguf.name, dtype="bfloat16", batch_size=16)
    rows = products(backend.model, reps=200 if args.questions >= 16 else 20)
    lines = (DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[: args.questions]
    questions = [json.loads(line)["question"] for line in lines]
    prompt = "Q: {}\nA: Let's think step by step."
    workloads = {
        "greedy": [Request(prompt=prompt.format(q), max_tokens=160, stop=["Q:"]) for q in questions],
        "sampled k=8": [
            Request(prompt=prompt.format(q), n=8, temperature=0.7, max_tokens=160, stop=["Q:"], seed=0)
            for q in questions[: max(1, len(questions) // 4)]
        ],
    }
    backend.generate(workloads["greedy"][:2], progress=False)  # warm-up
    runs = {}
    for name, requests in workloads.items():
        best: dict[str, dict] = {}
        for packed in (False, True, False, True):
            set_packed(backend.model, packed)
            r = generation(backend, requests)
            key = "packed" if packed else "plain"
            if key not in best or r["s"] < best[key]["s"]:
                best[key] = r
        a, b = best["plain"]["texts"], best["packed"]["texts"]
        pairs = [(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
        runs[name] = {
            "plain_s": round(best["plain"]["s"], 2),
            "packed_s": round(best["packed"]["s"], 2),
            "steps": [best["plain"]["steps"], best["packed"]["steps"]],
            "speedup": round(best["plain"]["s"] / best["packed"]["s"], 3),
            "identical": sum(x == y for x, y in pairs),
            "completions": len(pairs),
        }
    # Prompt-lookup drafts (HFBackend's default where products are low-precision) on the packed path: cost and
    # whether the outputs stay those of one-token steps, at the eval's length (256 new tokens).
    set_packed(backend.model, True)
    long_greedy = [Request(prompt=prompt.format(q), max_tokens=256, stop=["Q:"]) for q in questions]
    best = {}
    for lookahead in (0, 4, 0, 4):
        backend.lookahead = lookahead
        r = generation(backend, long_greedy)
        if lookahead not in best or r["s"] < best[lookahead]["s"]:
            best[lookahead] = r
    drafts = {
        "none_s": round(best[0]["s"], 2),
        "drafts_s": round(best[4]["s"], 2),
        "steps": [best[0]["steps"], best[4]["steps"]],
        "speedup": round(best[0]["s"] / best[4]["s"], 3),
        "identical": sum(a == b for a, b in zip(best[0]["texts"], best[4]["texts"])),
        "completions": len(long_greedy),
    }
    result = {
        "command": "python bench/prepacked_linear.py"
        + (f" --questions {args.questions}" if args.questions != 32 else ""),
        "model": f"{MODEL_DIR.name}/{gguf.name} (bf16)",
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}",
        "products": rows,
        "generation": runs,
        "drafts": drafts,
    }
    write_results(args.out, result, render)


def render(r: dict) -> str:
    out = [
        "# bf16 generation on a CPU: linear weights packed once vs reordered at every product",
        "",
        f"Command: `{r['command']}`. Model {r['model']}; {r['machine']}.",
        "One model object, its linear layers switched between the two paths; runs alternate plain, packed, plain,",
        "packed and the faster of each path's two runs is shown.",
        "",
        "## Generation (slot decoding, 16 slots, up to 160 new tokens)",
        "",
        "| workload | plain s | packed s | speed-up | steps | identical completions |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, g in r["generation"].items():
        out.append(
            f"| {name} | {g['plain_s']} | {g['packed_s']} | {g['speedup']}x | {g['steps'][1]} | "
            f"{g['identical']}/{g['completions']} |"
        )
    d = r["drafts"]
    out += [
        "",
        "## Greedy with prompt-lookup drafts (4 per step) vs one token per step, packed weights, 256 new tokens",
        "",
        "| drafts | none | 4 |",
        "|---|---:|---:|",
        f"| seconds | {d['none_s']} | {d['drafts_s']} |",
        f"| decoding steps | {d['steps'][0]} | {d['steps'][1]} |",
        "",
        f"Speed-up from drafts: {d['speedup']}x; identical completions: {d['identical']}/{d['completions']} (a bf16",
        "step that checks 5 positions per row rounds differently from one that checks 1).",
    ]
    out += ["", "## One product (microseconds, best of two runs)", ""]
    out += ["| weight | rows | plain us | packed us | plain / packed | same bits |", "|---|---:|---:|---:|---:|---|"]
    for p in r["products"]:
        ratio = p["plain"] / p["packed"]
        out.append(
            f"| {p['shape']} | {p['rows']} | {p['plain']:.0f} | {p['packed']:.0f} | {ratio:.2f} | {p['same_bits']} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
