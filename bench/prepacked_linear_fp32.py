"""fp32 generation on a CPU: the linear weights packed for oneDNN or for MKL, against the plain path.

One model object (SmolLM2-135M-Instruct Q4_1 GGUF from ../shared/data, loaded in fp32), its linear layers switched
between ``nn.Linear`` (MKL's sgemm packs each weight at every product), MKL's packs for the decoding batch (F.linear's
bits, one row count) and oneDNN's blocked layout (every row count, a row's bits independent of the rows beside it,
~1e-6 off F.linear's; what ``prepack_linears`` picks for fp32 where that holds: models/prepacked_linear.py):

* one decoding step's linear products (every layer of the model) at 1 to 100 rows: milliseconds per path, the best
  of three;
* greedy zero-shot-CoT on the first N GSM8K test questions (slot decoding, S slots, 128 new tokens, stop "Q:"), the
  paths in ABCCBA order, the faster of each path's two runs shown: wall time, and completions identical to the plain
  path's.

Writes bench/results/prepacked_linear_fp32.{json,md}.

    .venv/bin/python bench/prepacked_linear_fp32.py                   # 64 questions, 32 slots (a few minutes)
    .venv/bin/python bench/prepacked_linear_fp32.py --questions 8     # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _paths import DATA, MODEL_DIR, ROOT
from _results import environment, write_results

PATHS = ("plain", "MKL", "oneDNN")
STEP_ROWS = (1, 2, 5, 12, 16, 32, 50, 100)


def set_path(model, path: str, rows: int) -> None:
    """Every plain or packed linear layer of the model on ``path``, packed for ``rows``-row products."""
    import torch
    from torch import nn

    from cotbridge.models import prepacked_linear as pl

    packing = {"MKL": pl.MKLPacking(), "oneDNN": pl.PACKINGS[torch.float32][0]}.get(path)
    for m in model.modules():
        if type(m) in (nn.Linear, pl.PrepackedLinear):
            m.__class__ = nn.Linear if packing is None else pl.PrepackedLinear
            if packing is not None:
                m.packing, m.pack_rows = packing, rows
    pl.forget_packed(model)


def step_products(model) -> list[dict]:
    """Milliseconds for one decoding step's linear products (all layers, LM head included) at each row count."""
    import torch
    from torch import nn

    from cotbridge.models import prepacked_linear as pl

    layers = [m for m in model.modules() if type(m) in (nn.Linear, pl.PrepackedLinear)]
    out = []
    for rows in STEP_ROWS:
        xs = {n: torch.randn(rows, n) for n in {m.in_features for m in layers}}
        timing = {}
        for path in PATHS:
            set_path(model, path, rows)
            with torch.no_grad():
                for m in layers:  # packs made outside the timing
                    m(xs[m.in_features])
                best = float("inf")
                for _ in range(3):
                    t = time.perf_counter()
                    for m in layers:
                        m(xs[m.in_features])
                    best = min(best, time.perf_counter() - t)
            timing[path] = round(best * 1e3, 1)
        out.append({"rows": rows, **timing})
    return out


def generation(backend, requests) -> dict:
    t = time.perf_counter()
    out = backend.generate(requests, progress=False)
    return {"s": time.perf_counter() - t, "texts": [c.text for cs in out for c in cs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prepacked_linear_fp32"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import HFBackend

    gguf = next(MODEL_DIR.glob("*.gguf"))
    backend = HFBackend(str(MODEL_DIR), gguf_file=gguf.name, dtype="float32", batch_size=args.slots)
    chosen = next((type(m).__name__, m.packing.name) for m in backend.model.modules() if hasattr(m, "packing"))
    steps = step_products(backend.model)
    lines = (DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[: args.questions]
    prompt = "Q: {}\nA: Let's think step by step."
    requests = [
        Request(prompt=prompt.format(json.loads(line)["question"]), max_tokens=128, stop=["Q:"]) for line in lines
    ]
    set_path(backend.model, "plain", args.slots)
    backend.generate(requests[:2], progress=False)  # warm-up
    best: dict[str, dict] = {}
    for path in PATHS + PATHS[::-1]:
        set_path(backend.model, path, args.slots)
        r = generation(backend, requests)
        print(f"{path}: {r['s']:.1f} s", flush=True)
        if path not in best or r["s"] < best[path]["s"]:
            best[path] = r
    plain = best["plain"]["texts"]
    runs = {
        path: {
            "s": round(r["s"], 2),
            "vs_plain": round(r["s"] / best["plain"]["s"], 3),
            "identical_to_plain": sum(a == b for a, b in zip(r["texts"], plain)),
        }
        for path, r in best.items()
    }
    result = {
        "command": "python bench/prepacked_linear_fp32.py"
        + (f" --questions {args.questions}" if args.questions != 64 else "")
        + (f" --slots {args.slots}" if args.slots != 32 else ""),
        "model": f"{MODEL_DIR.name}/{gguf.name} (fp32)",
        **environment(),
        "picked_by_prepack_linears": chosen[1],
        "questions": len(requests),
        "slots": args.slots,
        "step_products_ms": steps,
        "generation": runs,
    }
    write_results(args.out, result, render)


def render(r: dict) -> str:
    out = [
        "# fp32 generation on a CPU: linear weights packed for oneDNN or MKL vs the plain path",
        "",
        f"Command: `{r['command']}`. Model {r['model']}; CPU {r['cpu']}; {r['machine']}; load average "
        f"{r['load_average']:.2f} at the end. `prepack_linears` picked **{r['picked_by_prepack_linears']}** here.",
        "",
        "## One decoding step's linear products (every layer and the LM head), milliseconds, best of three",
        "",
        "| rows | " + " | ".join(PATHS) + " | oneDNN / MKL |",
        "|---:|" + "---:|" * (len(PATHS) + 1),
    ]
    for s in r["step_products_ms"]:
        out.append(f"| {s['rows']} | " + " | ".join(str(s[p]) for p in PATHS) + f" | {s['oneDNN'] / s['MKL']:.2f} |")
    out += [
        "",
        "MKL's packs serve one row count: each row here is packed for its own count (in generation, only the",
        "decoding batch's steps are; the other counts, pre-fills and the last few rows, take the plain path).",
        "",
        f"## Greedy zero-shot-CoT, {r['questions']} GSM8K questions, {r['slots']} slots, 128 new tokens",
        "",
        "Order plain, MKL, oneDNN, oneDNN, MKL, plain; the faster of each path's two runs.",
        "",
        "| path | seconds | / plain | completions identical to plain |",
        "|---|---:|---:|---:|",
    ]
    for path, g in r["generation"].items():
        out.append(f"| {path} | {g['s']} | {g['vs_plain']} | {g['identical_to_plain']}/{r['questions']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
