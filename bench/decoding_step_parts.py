"""One slot-decoding step, taken apart: through ``model()``, through the registered decoding step with each projection
its own product (what leaving out transformers' per-call plumbing saves), and through the step with stacked
projections (models/stacked_projections.py). Where the stacked step's time goes: the same step timed with attention
left out (each layer passes its queries on as its output), and with attention and every matrix product left out
(each product returns an uninitialised tensor of its shape): the differences are attention's and the products' shares,
the remainder the elementwise work (norms, rotary embedding, residuals, the cache writes) and Python. Those two are
timings only: their logits are meaningless.

SmolLM2-135M-Instruct (the Q4_1 GGUF, dequantised) at each row count, one new token a row attending to 200 cached
positions (random keys/values; the cache is written at one column, so every call costs the same). The three are
timed in alternating rounds of 20 steps (the median round per variant reported); every variant's logits must equal
``model()``'s.

    .venv/bin/python bench/decoding_step_parts.py --out bench/results/decoding_step_parts_zen4
    .venv/bin/python bench/decoding_step_parts.py --rows 4 --rounds 2 --out "$(mktemp -d)/parts"   # smoke test
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _paths import MODEL_DIR
from _results import environment, heading, write_results

CACHED = 200  # positions each row attends to besides its new one
STEPS_A_ROUND = 20


def fixed_cache(model: Any, rows: int) -> Any:
    """A cache whose ``update`` writes the step's keys/values at one column after CACHED random ones."""
    import torch
    from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

    cfg = model.config
    shape = (rows, cfg.num_key_value_heads, CACHED + 1, cfg.hidden_size // cfg.num_attention_heads)
    keys = [torch.randn(shape).to(model.dtype) for _ in range(cfg.num_hidden_layers)]
    values = [torch.randn(shape).to(model.dtype) for _ in range(cfg.num_hidden_layers)]

    class FixedCache(DynamicCache):
        def __init__(self) -> None:
            Cache.__init__(self, layers=[DynamicLayer() for _ in range(cfg.num_hidden_layers)])

        def update(self, k: Any, v: Any, layer: int, *args: Any, **kw: Any) -> Any:
            keys[layer][:, :, CACHED:].copy_(k)
            values[layer][:, :, CACHED:].copy_(v)
            return keys[layer], values[layer]

        def get_seq_length(self, layer: int = 0) -> int:
            return CACHED

    return FixedCache()


@contextmanager
def left_out(attention: bool, products: bool) -> Iterator[None]:
    """Within: the decoding step skips attention and/or its matrix products (shapes kept, values meaningless)."""
    import torch
    from transformers import AttentionInterface

    from cotbridge.backends import decoding_step
    from cotbridge.backends.grouped_attention import ATTENTION, register_attention
    from cotbridge.models.prepacked_linear import PrepackedLinear

    def no_attention(module: Any, query: Any, *args: Any, **kw: Any) -> Any:
        return query.transpose(1, 2).contiguous(), None

    def no_product(self: Any, x: Any) -> Any:
        return x.new_empty(*x.shape[:-1], self.out_features)

    stacked, classes = decoding_step.projections, (torch.nn.Linear, PrepackedLinear)
    forwards = [c.__dict__["forward"] for c in classes]
    if attention:
        AttentionInterface.register(ATTENTION, no_attention)
    if products:
        decoding_step.projections = lambda owner, linears, x: tuple(no_product(m, x) for m in linears)
        for c in classes:
            c.forward = no_product
    try:
        yield
    finally:
        register_attention()
        decoding_step.projections = stacked
        for c, f in zip(classes, forwards):
            c.forward = f


def measure(dtype: str, rows: int, rounds: int) -> dict[str, Any]:
    import torch

    from cotbridge.backends import decoding_step, get_backend
    from cotbridge.backends.grouped_attention import ATTENTION, register_attention

    model = get_backend("hf", model=str(MODEL_DIR), batch_size=rows, dtype=dtype).model
    register_attention()
    model.config._attn_implementation = ATTENTION  # what slot decoding runs under
    cache = fixed_cache(model, rows)
    ids = torch.randint(0, 1000, (rows, 1))
    mask = torch.ones(rows, 1, 1, CACHED + 1, dtype=torch.bool)
    positions = torch.full((rows, 1), CACHED)
    stacked = decoding_step.projections

    def apart(owner: Any, linears: Any, x: Any) -> Any:
        return tuple(m(x) for m in linears)

    def step(projections: Any) -> Any:
        def run() -> Any:
            decoding_step.projections = projections
            try:
                return decoding_step.llama_step(model, ids, mask, positions, cache)
            finally:
                decoding_step.projections = stacked

        return run

    def without(attention: bool, products: bool) -> Any:
        def run() -> Any:
            with left_out(attention, products):
                return decoding_step.llama_step(model, ids, mask, positions, cache)

        return run

    variants = {
        "model()": lambda: model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache).logits,
        "step, projections apart": step(apart),
        "step, stacked": step(stacked),
    }
    timing_only = {
        "stacked, no attention": without(True, False),
        "stacked, no attention or products": without(True, True),
    }
    with torch.inference_mode():
        reference = variants["model()"]()
        for run in variants.values():  # a stack's first product at a row count is the layers' own (the bits check)
            run()
        same = {name: bool(torch.equal(run(), reference)) for name, run in variants.items()}
        variants.update(timing_only)
        for run in timing_only.values():
            run()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(rounds):
            for name in variants if r % 2 == 0 else reversed(variants):
                t0 = time.perf_counter()
                for _ in range(STEPS_A_ROUND):
                    variants[name]()
                times[name].append((time.perf_counter() - t0) / STEPS_A_ROUND * 1000)
    ms = {name: statistics.median(t) for name, t in times.items()}
    rest = ms["stacked, no attention or products"]
    shares = {  # of the stacked step's time
        "attention": ms["step, stacked"] - ms["stacked, no attention"],
        "products": ms["stacked, no attention"] - rest,
        "rest": rest,
    }
    print(f"  {dtype} {rows} rows: " + ", ".join(f"{n} {v:.1f} ms" for n, v in ms.items()), file=sys.stderr)
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "rows": rows,
        "ms": {name: round(v, 2) for name, v in ms.items()},
        "over_model": {name: round(v / ms["model()"], 3) for name, v in ms.items()},
        "same_logits": same,
        "shares_ms": {name: round(v, 2) for name, v in shares.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[16, 50])
    p.add_argument("--dtypes", nargs="+", default=["auto", "float32"])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", default="bench/results/decoding_step_parts")
    args = p.parse_args()
    runs = [measure(dtype, rows, args.rounds) for dtype in args.dtypes for rows in args.rows]
    command = "python bench/decoding_step_parts.py " + shlex.join(sys.argv[1:])
    write_results(args.out, {"command": command, **environment(), "cached": CACHED, "runs": runs}, render)


def render(r: dict[str, Any]) -> str:
    names = [n for n in r["runs"][0]["ms"] if n in r["runs"][0]["same_logits"]]
    out = [
        *heading(r, "One decoding step: model(), the registered step, the step with stacked projections"),
        f"One new token a row attending to {r['cached']} cached positions; alternating rounds of "
        f"{STEPS_A_ROUND} steps, the median round per variant (ms a step; / model() in brackets).",
        "",
        "| dtype | rows | " + " | ".join(names) + " | logits equal model()'s |",
        "|---|---:|" + "---:|" * len(names) + "---|",
    ]
    for w in r["runs"]:
        cells = [f"{w['ms'][n]} ({w['over_model'][n]})" for n in names]
        same = "all" if all(w["same_logits"].values()) else ", ".join(n for n, s in w["same_logits"].items() if not s)
        out.append(f"| {w['dtype']} | {w['rows']} | " + " | ".join(cells) + f" | {same} |")
    out += [
        "",
        "Where the stacked step's time goes (ms; attention: the step minus the step without attention; products: that",
        "minus the step without attention or products; rest: the latter, i.e. elementwise work and Python):",
        "",
        "| dtype | rows | attention | matrix products | rest | stacked step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w in r["runs"]:
        sh, total = w["shares_ms"], w["ms"]["step, stacked"]
        cells = [f"{sh[n]} ({sh[n] / total:.0%})" for n in ("attention", "products", "rest")]
        out.append(f"| {w['dtype']} | {w['rows']} | " + " | ".join(cells) + f" | {total} |")
    return "\n".join(out + [""])


if __name__ == "__main__":
    main()
