"""Few-shot prompts in slot decoding: the tokens prompts share, pre-filled once (kept for the run) or with each prompt.

SmolLM2-135M-Instruct (Q4_1 GGUF from ../shared/data) in fp32, N GSM8K test questions behind the same K exemplars
from the GSM8K train split (few-shot-CoT's prompt shape: "Q: ...\\nA: <worked answer>\\n\\n" x K, then the question),
16 slots, greedy, 64 new tokens, stop "Q:". The two settings alternate (off, on, on, off; the faster of each pair
shown): wall time, prompt tokens pre-filled, and completions identical between them.

Writes bench/results/shared_prefix_prefill.{json,md}.

    .venv/bin/python bench/shared_prefix_prefill.py                 # 32 questions, 4 exemplars (~5 min)
    .venv/bin/python bench/shared_prefix_prefill.py --questions 4   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _paths import DATA, MODEL_DIR, ROOT
from _results import environment, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "shared_prefix_prefill"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from cotbridge.backends import token_reuse
    from cotbridge.backends.base import Request
    from cotbridge.backends.hf import HFBackend

    read = lambda split: [json.loads(x) for x in (DATA / "gsm8k" / f"{split}.jsonl").read_text().splitlines()]  # noqa: E731
    block = "".join(f"Q: {e['question']}\nA: {' '.join(e['answer'].split())}\n\n" for e in read("train")[: args.shots])
    questions = read("test")[: args.questions]
    requests = [Request(prompt=f"{block}Q: {e['question']}\nA:", max_tokens=64, stop=["Q:"]) for e in questions]
    gguf = next(MODEL_DIR.glob("*.gguf"))
    backend = HFBackend(str(MODEL_DIR), gguf_file=gguf.name, dtype="float32", batch_size=16)
    backend.generate(requests[:2], progress=False)  # warm-up (packs the weights)
    default = token_reuse.MIN_SHARED_PREFIX
    best: dict[str, dict] = {}
    for setting in ("off", "on", "on", "off"):
        token_reuse.MIN_SHARED_PREFIX = default if setting == "on" else 10**9
        t = time.perf_counter()
        out = backend.generate(requests, progress=False)
        s = time.perf_counter() - t
        print(f"{setting}: {s:.1f} s", flush=True)
        if setting not in best or s < best[setting]["s"]:
            texts = [c.text for cs in out for c in cs]
            best[setting] = {"s": round(s, 2), "prefill_tokens": backend.stats["prefill_tokens"], "texts": texts}
    token_reuse.MIN_SHARED_PREFIX = default
    result = {
        "command": "python bench/shared_prefix_prefill.py"
        + (f" --questions {args.questions}" if args.questions != 32 else "")
        + (f" --shots {args.shots}" if args.shots != 4 else ""),
        "model": f"{MODEL_DIR.name}/{gguf.name} (fp32)",
        **environment(),
        "questions": len(requests),
        "shots": args.shots,
        "prompt_tokens": sum(c.prompt_tokens for cs in out for c in cs),
        "off": {k: v for k, v in best["off"].items() if k != "texts"},
        "on": {k: v for k, v in best["on"].items() if k != "texts"},
        "speedup": round(best["off"]["s"] / best["on"]["s"], 2),
        "identical": sum(a == b for a, b in zip(best["off"]["texts"], best["on"]["texts"])),
    }
    write_results(args.out, result, render)


def render(r: dict) -> str:
    return "\n".join(
        [
            "# Few-shot prompts: the shared prefix pre-filled once per run vs with every prompt",
            "",
            f"Command: `{r['command']}`. Model {r['model']}; CPU {r['cpu']}; {r['machine']}; load average "
            f"{r['load_average']:.2f} at the end.",
            "",
            f"{r['questions']} GSM8K test questions behind the same {r['shots']} train-split exemplars "
            f"({r['prompt_tokens']} prompt tokens in all), 16 slots, greedy, 64 new tokens, stop `Q:`; off, on, on,",
            "off, the faster run of each shown.",
            "",
            "| shared prefix | seconds | prompt tokens pre-filled |",
            "|---|---:|---:|",
            f"| with every prompt (off) | {r['off']['s']} | {r['off']['prefill_tokens']} |",
            f"| once per run (on, the default) | {r['on']['s']} | {r['on']['prefill_tokens']} |",
            "",
            f"Speed-up {r['speedup']}x; completions identical between the two: {r['identical']}/{r['questions']}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
