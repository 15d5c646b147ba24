"""Batched vs one-at-a-time generation through HFBackend, measured side by side in one run.

(a) 64 greedy prompts, one generate() call per prompt with batch_size=1
(b) the same 64 prompts in one generate() call with batch_size=64 (or --batch-size)
(c) self-consistency k=8: per prompt, one Request(n=8) vs 8 separate Request(n=1) calls
    (plus, for reference, all prompts x 8 samples in one generate() call)

Same model (SmolLM2-135M-Instruct Q4_1 GGUF from ../shared/data, dequantised to fp32), same prompts
(cotbridge's zero_shot_cot_single prompts of the first GSM8K test questions), same settings on both
sides. Writes bench/results/batched_generation.{json,md}.

    .venv/bin/python bench/batched_generation.py            # full run (a few minutes on 2 cores)
    .venv/bin/python bench/batched_generation.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _paths import DATA, MODEL_DIR, ROOT
from _quiet import QuietTimer

RESULTS = ROOT / "bench" / "results"


def gsm8k_prompts(n: int) -> list[str]:
    from cotbridge.prompts.modes import PROMPT_MODES, PromptContext
    from cotbridge.tasks import parse_task_spec

    task, params = parse_task_spec("gsm8k")
    examples = task.load("test", str(DATA), **params)[:n]
    mode = PROMPT_MODES.get("zero_shot_cot_single")
    return [mode.first(ex, PromptContext(task=task)) for ex in examples]


def padded_prompt_tokens(lengths: list[int], batch_sizes: list[int]) -> dict[str, int]:
    """Prompt tokens the prefill processes at each batch size: HFBackend sorts by length, then left-pads each batch."""
    desc = sorted(lengths, reverse=True)
    out = {"1": sum(lengths)}
    for bs in batch_sizes:
        out[str(bs)] = sum(max(desc[i : i + bs]) * len(desc[i : i + bs]) for i in range(0, len(desc), bs))
    return out


def tokens(comps) -> int:
    return sum(c.completion_tokens for cs in comps for c in cs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--sc-prompts", type=int, default=8, help="prompts for the self-consistency part")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument(
        "--extra-batch-sizes",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[16, 32],
        help="also time the greedy batch at these batch sizes (comma-separated; '' for none)",
    )
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.15,
        help="re-measure a section if other processes used more CPUs than this meanwhile",
    )
    ap.add_argument("--no-quiet", action="store_true", help="time everything once, whatever else runs on the machine")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--quick", action="store_true", help="8 prompts, 8 tokens, 2 SC prompts: smoke test only")
    ap.add_argument("--out", default=str(RESULTS / "batched_generation"), help="output path without extension")
    ap.add_argument("--render-only", action="store_true", help="re-write the .md from the existing .json (no timing)")
    args = ap.parse_args()
    if args.render_only:
        path = Path(args.out).with_suffix(".json")
        r = json.loads(path.read_text(encoding="utf-8"))
        if "padded_prompt_tokens" not in r["settings"]:  # derived from the prompts only (tokenizer, no model)
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))
            lens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in gsm8k_prompts(r["greedy"]["n"])]
            sizes = [r["settings"]["greedy_batch_size"], *map(int, r["greedy"]["other_batch_sizes"])]
            r["settings"]["padded_prompt_tokens"] = padded_prompt_tokens(lens, sizes)
            path.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        path.with_suffix(".md").write_text(markdown(r), encoding="utf-8")
        return
    if args.quick:
        args.n_prompts, args.max_new_tokens, args.sc_prompts, args.batch_size, args.extra_batch_sizes = 8, 8, 2, 8, [4]

    import torch
    import transformers

    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import HFBackend
    from cotbridge.models.loading import load_model_and_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(str(MODEL_DIR))
    load_s = time.perf_counter() - t0
    one = HFBackend(str(MODEL_DIR), model_obj=model, tokenizer=tok, batch_size=1)
    many = HFBackend(str(MODEL_DIR), model_obj=model, tokenizer=tok, batch_size=args.batch_size)
    attn = getattr(model.config, "_attn_implementation", None)
    prompts = gsm8k_prompts(args.n_prompts)
    prompt_lens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    greedy = dict(temperature=0.0, max_tokens=args.max_new_tokens, stop=[])
    print(
        f"model loaded in {load_s:.1f}s; torch {torch.__version__}, {torch.get_num_threads()} threads, attn={attn}, "
        f"{len(prompts)} prompts of {min(prompt_lens)}-{max(prompt_lens)} tokens"
    )

    # warm-up (first-call allocations, kernel selection) outside the timings, both batch shapes
    one.generate([Request(prompt=prompts[0], **{**greedy, "max_tokens": 4})], progress=False)
    many.generate(
        [Request(prompt=p, **{**greedy, "max_tokens": 4}) for p in prompts[: args.batch_size]], progress=False
    )

    qt = QuietTimer(max_foreign=args.max_foreign, enabled=not args.no_quiet)
    gen_one = lambda p, **kw: one.generate([Request(prompt=p, **kw)], progress=False)[0]  # noqa: E731

    # (a) one prompt at a time, batch_size=1 (timed in chunks of 8 prompts so a chunk disturbed by another
    #     process can be re-measured on its own)
    seq = []
    for i in range(0, len(prompts), 8):
        seq += qt.run("a", lambda: [gen_one(p, **greedy) for p in prompts[i : i + 8]])[0]
    t_seq = qt.sections["a"]["s"]
    print(f"(a) one-at-a-time: {t_seq:.2f}s, {tokens(seq)} tokens")
    # (b) all prompts in one call, batch_size=B
    bat, t_bat = qt.run("b", lambda: many.generate([Request(prompt=p, **greedy) for p in prompts], progress=False))
    print(f"(b) batched (batch_size={args.batch_size}): {t_bat:.2f}s, {tokens(bat)} tokens")
    ratio_ab = t_seq / t_bat
    extra = {}
    for bs in args.extra_batch_sizes:
        eb = HFBackend(str(MODEL_DIR), model_obj=model, tokenizer=tok, batch_size=bs)
        _, t = qt.run(f"b{bs}", lambda: eb.generate([Request(prompt=p, **greedy) for p in prompts], progress=False))
        extra[str(bs)] = {"s": round(t, 2), "speedup": round(t_seq / t, 2)}
        print(f"    batch_size={bs}: {t:.2f}s ({t_seq / t:.2f}x)")
    same = [a[0].text == b[0].text for a, b in zip(seq, bat)]
    # how far the two agree token-wise where they differ (small fp32 drift from left padding)
    diverge = []
    for a, b, s in zip(seq, bat, same):
        if not s:
            ta, tb = tok(a[0].text)["input_ids"], tok(b[0].text)["input_ids"]
            diverge.append(next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb))))
    print(
        f"    speed-up (a)/(b): {ratio_ab:.2f}x; batched greedy == one-at-a-time greedy for "
        f"{sum(same)}/{len(same)} prompts (first differing token of the others: {diverge})"
    )

    # (c) self-consistency: per prompt, one Request(n=k) vs k calls with n=1 (distinct seeds)
    sc_prompts = prompts[: args.sc_prompts]
    sample = dict(temperature=args.temperature, max_tokens=args.max_new_tokens, stop=[])
    sc_b = HFBackend(str(MODEL_DIR), model_obj=model, tokenizer=tok, batch_size=max(args.k, args.batch_size))
    sc_b.generate([Request(prompt=sc_prompts[0], n=args.k, **{**sample, "max_tokens": 4})], progress=False)
    nk = [
        qt.run("c2", lambda: sc_b.generate([Request(prompt=p, n=args.k, seed=0, **sample)], progress=False)[0])[0]
        for p in sc_prompts
    ]
    sep = [qt.run("c1", lambda: [gen_one(p, n=1, seed=s, **sample)[0] for s in range(args.k)])[0] for p in sc_prompts]
    allk, t_allk = qt.run(
        "c3",
        lambda: sc_b.generate([Request(prompt=p, n=args.k, seed=0, **sample) for p in sc_prompts], progress=False),
    )
    t_nk, t_sep = qt.sections["c2"]["s"], qt.sections["c1"]["s"]
    ratio_c = t_sep / t_nk
    print(
        f"(c) k={args.k}, {len(sc_prompts)} prompts: n={args.k} per call {t_nk:.2f}s ({tokens(nk)} tokens) vs "
        f"{args.k} calls with n=1 {t_sep:.2f}s ({tokens(sep)} tokens): {ratio_c:.2f}x; "
        f"all {len(sc_prompts)}x{args.k} in one call (batch_size={sc_b.batch_size}): {t_allk:.2f}s "
        f"({t_sep / t_allk:.2f}x)"
    )
    distinct = sum(len({c.text for c in cs}) for cs in nk) / len(nk)

    result = {
        "command": " ".join([".venv/bin/python", "bench/batched_generation.py", *sys.argv[1:]]),
        "settings": {
            "model": str(MODEL_DIR.relative_to(ROOT.parent)),
            "dtype": str(model.dtype),
            "attn_implementation": attn,
            "prompts": f"zero_shot_cot_single prompts of the first {len(prompts)} GSM8K test questions",
            "prompt_tokens": {
                "min": min(prompt_lens),
                "max": max(prompt_lens),
                "mean": sum(prompt_lens) / len(prompt_lens),
            },
            "padded_prompt_tokens": padded_prompt_tokens(prompt_lens, [args.batch_size, *args.extra_batch_sizes]),
            "max_new_tokens": args.max_new_tokens,
            "stop": [],
            "greedy_batch_size": args.batch_size,
            "sc": {
                "prompts": len(sc_prompts),
                "k": args.k,
                "temperature": args.temperature,
                "top_p": 1.0,
                "batch_size": sc_b.batch_size,
            },
            "warmup": "one short generate() per batch shape before timing",
            "timing": (
                "wall time; each section (or chunk: 8 prompts for (a), one prompt for (c1)/(c2)) is timed when "
                f"the machine is quiet and re-measured if other processes used > {args.max_foreign} CPUs meanwhile"
                if not args.no_quiet
                else "wall time, measured once"
            ),
        },
        "machine": {
            "nproc": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "sections": qt.report(),
            "seconds_lost_to_other_processes": round(qt.wasted_s, 1),
        },
        "model_load_s": round(load_s, 2),
        "greedy": {
            "one_at_a_time_s": round(t_seq, 2),
            "batched_s": round(t_bat, 2),
            "speedup": round(ratio_ab, 2),
            "target": 4.0,
            "met": ratio_ab >= 4.0,
            "tokens_one_at_a_time": tokens(seq),
            "tokens_batched": tokens(bat),
            "identical_outputs": sum(same),
            "n": len(same),
            "identical_fraction": round(sum(same) / len(same), 3),
            "first_differing_token": diverge,
            "other_batch_sizes": extra,
        },
        "self_consistency": {
            "n_per_call_s": round(t_nk, 2),
            "separate_calls_s": round(t_sep, 2),
            "speedup": round(ratio_c, 2),
            "target": 2.0,
            "met": ratio_c >= 2.0,
            "all_prompts_one_call_s": round(t_allk, 2),
            "all_prompts_one_call_speedup": round(t_sep / t_allk, 2),
            "tokens_n_per_call": tokens(nk),
            "tokens_separate": tokens(sep),
            "mean_distinct_samples_per_prompt": distinct,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"sections: {qt.report()}; {qt.wasted_s:.0f}s spent waiting for / re-measuring after other processes")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


def markdown(r: dict) -> str:
    s, m, g, c = r["settings"], r["machine"], r["greedy"], r["self_consistency"]
    ok = lambda b: "met" if b else "MISSED"  # noqa: E731
    extra_rows = "".join(
        f"| (b') greedy, one call, batch_size={bs} | {v['s']} | | {v['speedup']}x | |\n"
        for bs, v in g["other_batch_sizes"].items()
    )
    return f"""# Batched vs one-at-a-time generation (HFBackend)

Command: `{r["command"]}`

Model `{s["model"]}` ({s["dtype"]}, attention `{s["attn_implementation"]}`), {g["n"]} prompts
({s["prompts"]}, {s["prompt_tokens"]["min"]}-{s["prompt_tokens"]["max"]} tokens), max_new_tokens {s["max_new_tokens"]},
no stop strings, left padding, length-sorted batches. {s["warmup"]}; model loading ({r["model_load_s"]} s) not timed.

Machine: {m["nproc"]} CPUs ({m["cpu"]}), torch {m["torch"]} with {m["torch_threads"]} threads, \
transformers {m["transformers"]}, Python {m["python"]};
1-min load average before / after the run: {m["loadavg_before"][0]:.2f} / {m["loadavg_after"][0]:.2f} \
(the machine is shared;
other jobs slow either side 3-10x at random). Timing: {s["timing"]}. Per section (s: wall, cpu_s: our CPU time,
attempts over parts: re-measurements, max_foreign_cpus: most CPUs other processes used in an accepted measurement):
`{json.dumps(m["sections"])}`; {m["seconds_lost_to_other_processes"]} s lost \
waiting for / re-measuring after other processes.

| | time (s) | tokens generated | speed-up | target |
|---|---:|---:|---:|---|
| (a) greedy, one prompt per call, batch_size=1 | {g["one_at_a_time_s"]} | {g["tokens_one_at_a_time"]} | 1.00x | |
| (b) greedy, one call, batch_size={s["greedy_batch_size"]} | {g["batched_s"]} | {g["tokens_batched"]} | \
**{g["speedup"]}x** | >= 4x ({ok(g["met"])}) |
{extra_rows}| (c1) k={s["sc"]["k"]}: {s["sc"]["k"]} calls with n=1 per prompt, {s["sc"]["prompts"]} prompts | \
{c["separate_calls_s"]} | {c["tokens_separate"]} | 1.00x | |
| (c2) k={s["sc"]["k"]}: one call with n={s["sc"]["k"]} per prompt | {c["n_per_call_s"]} | {c["tokens_n_per_call"]} | \
**{c["speedup"]}x** | >= 2x ({ok(c["met"])}) |
| (c3) all {s["sc"]["prompts"]} prompts x {s["sc"]["k"]} samples in one call (batch_size={s["sc"]["batch_size"]}) | \
{c["all_prompts_one_call_s"]} | | {c["all_prompts_one_call_speedup"]}x | |

Sampling: temperature {s["sc"]["temperature"]}, top_p {s["sc"]["top_p"]}; \
on average {c["mean_distinct_samples_per_prompt"]:.1f} distinct samples of {s["sc"]["k"]} per prompt.

Greedy agreement: batched output == one-at-a-time output for {g["identical_outputs"]}/{g["n"]} prompts
({100 * g["identical_fraction"]:.0f}%). Where they differ, the first differing token index is \
{g["first_differing_token"]}
(fp32 numerics change slightly with left padding / batch shape, and greedy decoding amplifies near-ties).

Why batch_size={s["greedy_batch_size"]} is not the fastest: prompt tokens the prefill must process \
(length-sorted batches,
left-padded to the longest prompt in each batch): {s.get("padded_prompt_tokens")}. One batch of all prompts pads every
prompt to the longest one; prefill is compute-bound on 2 CPU cores and, with only 48 new tokens, a large share of the
batched time, so a smaller batch (less padding) can be faster even though each decode step does less work.
"""


if __name__ == "__main__":
    main()
