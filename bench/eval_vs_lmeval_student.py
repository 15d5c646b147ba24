"""cotbridge vs lm-evaluation-harness on a task the model can do: the quickstart's Fine-tune-CoT student, same dtype.

`bench/eval_vs_lmeval.py` compares the tools on GSM8K, where SmolLM2-135M is right ~2% of the time, so agreement
there is agreement between two kinds of noise. Here the model is the quickstart's diverse Fine-tune-CoT student
(`runs/quickstart/students/finetune_cot_diverse`, a merged HF folder: run `make quickstart` first) on the 100 test
questions of `synthetic_coin_flip:k=4` it was evaluated on. This script writes those questions to a JSONL and an
lm-eval task YAML over them (the student's prompt `{question} ###`, until `END`, greedy, the quickstart's 128 new
tokens, the answer read after `-->`), and runs both tools at the same dtype and batch size, in ABBA order, one
process at a time. Model loading is timed apart and left out of the compared times, as in eval_vs_lmeval.py.

    .venv/bin/python bench/eval_vs_lmeval_student.py --dtype bfloat16
    .venv/bin/python bench/eval_vs_lmeval_student.py --dtype float32 --out bench/results/eval_vs_lmeval_student_fp32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paths import ROOT
from _quiet import QuietTimer
from eval_vs_lmeval import ORDERS, Timed, instrument, plain, time_cotbridge_eval, timings

RESULTS = ROOT / "bench" / "results"
TASK_SPEC, LM_TASK = "synthetic_coin_flip:k=4", "coin_flip_student_local"
STOP, MAX_TOKENS = "END", 128  # the student's stop word and the quickstart's eval.max_tokens
ANSWER_RE = r"-->\s*(yes|no)"  # lm-eval's side of cotbridge's finetune_cot pipeline ("separator", then the word)

for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def write_task(folder: Path, limit: int) -> dict[str, Any]:
    """The test questions (as cotbridge's task builds them) and an lm-eval task YAML over them."""
    import yaml

    from cotbridge.tasks import parse_task_spec

    task, params = parse_task_spec(TASK_SPEC)
    examples = task.load("test", **params)[:limit]
    data = folder / "test.jsonl"
    data.write_text("".join(json.dumps({"question": e.question, "answer": e.answer}) + "\n" for e in examples))
    cfg = {
        "task": LM_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question}} ###",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": [STOP], "do_sample": False, "max_gen_toks": MAX_TOKENS},
        "filter_list": [
            {
                "name": "separator",
                "filter": [{"function": "regex", "regex_pattern": ANSWER_RE}, {"function": "take_first"}],
            }
        ],
        "metric_list": [
            {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True}
        ],
    }
    (folder / f"{LM_TASK}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg


def run_lmeval(student: Path, limit: int, batch_size: int, dtype: str, workdir: Path, qt: QuietTimer) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    cfg = write_task(workdir, limit)
    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(student), dtype=dtype, device="cpu", batch_size=batch_size)
    load_s = time.perf_counter() - t0
    gen = Timed(lm.generate_until)
    lm.generate_until = gen
    batches: list[dict[str, Any]] = []
    instrument(lm.model, qt, batches)
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[LM_TASK],
        limit=limit,
        log_samples=True,
        task_manager=TaskManager(include_path=str(workdir)),
        bootstrap_iters=0,
    )
    eval_s = time.perf_counter() - t0
    docs = sorted(res["samples"][LM_TASK], key=lambda s: s["doc_id"])
    return {
        **timings(load_s, eval_s, gen.seconds, qt, batches),
        "accuracy": res["results"][LM_TASK]["exact_match,separator"],
        "prompts": [
            s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict) else s["arguments"][0][0]
            for s in docs
        ],
        "outputs": [s["resps"][0][0] for s in docs],
        "answers": [
            s["filtered_resps"][0] if isinstance(s["filtered_resps"][0], str) else s["filtered_resps"][0][0]
            for s in docs
        ],
        "correct": [bool(s["exact_match"]) for s in docs],
        # the questions' file is in a temporary folder: recorded by its place there, not this machine's path
        "task_config": {**cfg, "dataset_kwargs": {"data_files": {"test": "<workdir>/test.jsonl"}}},
        "dtype": str(lm.model.dtype).removeprefix("torch."),
    }


def run_cotbridge(student: Path, limit: int, batch_size: int, dtype: str, workdir: Path, qt: QuietTimer) -> dict:
    from cotbridge.evaluation.run import EvalConfig
    from cotbridge.jsonl import read_jsonl

    cfg = EvalConfig(
        model=str(student),
        tasks=[TASK_SPEC],
        split="test",
        limit=limit,
        mode="finetune_cot",
        batch_size=batch_size,
        dtype=dtype,
        max_tokens=MAX_TOKENS,
        output=str(workdir / "out"),
    )
    summary, times = time_cotbridge_eval(cfg, qt)
    records = list(read_jsonl(workdir / "out" / "synthetic_coin_flip.jsonl"))
    return {
        **times,
        "accuracy": summary["results"]["synthetic_coin_flip"]["accuracy"],
        "prompts": [r["prompt"] for r in records],
        "outputs": [r["samples"][0]["output"] for r in records],
        "answers": [r["prediction"] for r in records],
        "correct": [bool(r["correct"]) for r in records],
    }


def interval95(acc: float, n: int) -> float:
    return 1.96 * math.sqrt(max(acc * (1 - acc), 1 / n) / n)  # a floor of 1/n so that 100% gets a width


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.split(STOP)[0]).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default=str(ROOT / "runs" / "quickstart" / "students" / "finetune_cot_diverse"))
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="both tools' weights")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=50, help="both tools (the quickstart evaluates 50 at a time)")
    ap.add_argument("--order", choices=list(ORDERS), default="abba")
    ap.add_argument("--max-foreign", type=float, default=0.15, help="re-run a batch if others used this many CPUs")
    ap.add_argument("--out", default=None, help="output path without extension (default by dtype)")
    args = ap.parse_args()
    student = Path(args.student)
    if not (student / "config.json").is_file():
        sys.exit(f"{student}: no merged student there; run `make quickstart` first (or give --student FOLDER)")
    sys.path.insert(0, str(ROOT / "bench"))
    from _results import cpu_model, write_results

    runners = {"lmeval": run_lmeval, "cotbridge": run_cotbridge}
    out: dict[str, dict[str, Any]] = {}
    runs, load_before = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="eval_vs_lmeval_student_") as tmp:
        for i, name in enumerate(ORDERS[args.order]):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            qt = QuietTimer(max_foreign=args.max_foreign)
            res = plain(runners[name](student, args.limit, args.batch_size, args.dtype, work, qt))
            runs.append({"tool": name, **{k: round(res[k], 2) for k in ("load_s", "eval_s", "generate_s", "lost_s")}})
            print(f"  {name}: load {res['load_s']:.1f} s, eval {res['eval_s']:.1f} s, accuracy {res['accuracy']:.2f}")
            if name not in out:
                out[name] = res
            elif res["outputs"] != out[name]["outputs"]:
                sys.exit(f"{name}: a repeated run generated different texts; the timings would not be comparable")
            else:
                for k in ("eval_s", "generate_s", "lost_s"):
                    out[name][k] += res[k]
    lm, cb = out["lmeval"], out["cotbridge"]
    n = len(cb["outputs"])
    assert len(lm["outputs"]) == n
    ratio = cb["eval_s"] / lm["eval_s"]
    gap = abs(cb["accuracy"] - lm["accuracy"])
    width = interval95(lm["accuracy"], n) + interval95(cb["accuracy"], n)
    result = {
        "command": " ".join([".venv/bin/python", "bench/eval_vs_lmeval_student.py", *sys.argv[1:]]),
        "student": str(student.relative_to(ROOT)) if student.is_relative_to(ROOT) else str(student),
        "task": TASK_SPEC,
        "n": n,
        "dtype": {"lmeval": lm["dtype"], "cotbridge": cb["dtype"]},
        "batch_size": args.batch_size,
        "order": args.order,
        "lmeval_task": lm["task_config"],
        "cotbridge": {"mode": "finetune_cot", "max_tokens": MAX_TOKENS, "decoding": cb["decoding"]},
        "accuracy": {
            "lmeval": lm["accuracy"],
            "cotbridge": cb["accuracy"],
            "gap": round(gap, 4),
            "interval95_sum": round(width, 4),
            "equal_within_interval": gap <= width,
        },
        "agreement": {
            "prompts_identical": sum(a == b for a, b in zip(lm["prompts"], cb["prompts"])) / n,
            "texts_identical": sum(norm(a) == norm(b) for a, b in zip(lm["outputs"], cb["outputs"])) / n,
            "answers_equal": sum(str(a).lower() == str(b).lower() for a, b in zip(lm["answers"], cb["answers"])) / n,
            "verdicts_equal": sum(a == b for a, b in zip(lm["correct"], cb["correct"])) / n,
        },
        "time_s": {
            "lmeval_load": round(lm["load_s"], 2),
            "cotbridge_load": round(cb["load_s"], 2),
            "lmeval_eval": round(lm["eval_s"], 2),
            "cotbridge_eval": round(cb["eval_s"], 2),
            "ratio_cotbridge_over_lmeval": round(ratio, 3),
            "target": 0.5,
            "met": ratio <= 0.5,
            "lost_to_other_processes": {"lmeval": round(lm["lost_s"], 1), "cotbridge": round(cb["lost_s"], 1)},
        },
        "runs": runs,
        "batches": {"lmeval": lm["batches"], "cotbridge": cb["batches"]},
        "machine": {
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    default = "eval_vs_lmeval_student" + ("" if args.dtype == "bfloat16" else "_fp32")
    write_results(args.out or RESULTS / default, result, render)


def render(r: dict[str, Any]) -> str:
    t, a, g = r["time_s"], r["accuracy"], r["agreement"]
    pooled = "two runs each, pooled" if r["order"] == "abba" else "one run each"
    return f"""# cotbridge vs lm-eval on a task the model can do ({r["dtype"]["cotbridge"]} both)

Command: `{r["command"]}`

Student `{r["student"]}` (the quickstart's diverse Fine-tune-CoT student, merged), task `{r["task"]}` test split,
first {r["n"]} questions; both tools in {r["dtype"]["lmeval"]} (lm-eval) / {r["dtype"]["cotbridge"]} (cotbridge),
batch size {r["batch_size"]}, greedy, until `{STOP}`, {MAX_TOKENS} new tokens; order {r["order"]} ({pooled}).
lm-eval task: written by this script (`{r["lmeval_task"]["doc_to_text"]}`, answer by regex `{ANSWER_RE}`, exact
match ignoring case); cotbridge: `--mode finetune_cot` (decoding: {r["cotbridge"]["decoding"]}).

| | lm-eval | cotbridge | cotbridge / lm-eval |
|---|---:|---:|---:|
| accuracy | {100 * a["lmeval"]:.1f}% | {100 * a["cotbridge"]:.1f}% | gap {100 * a["gap"]:.1f} points |
| model loading (left out) | {t["lmeval_load"]:.1f} s | {t["cotbridge_load"]:.1f} s | |
| evaluation | {t["lmeval_eval"]:.1f} s | {t["cotbridge_eval"]:.1f} s | **{t["ratio_cotbridge_over_lmeval"]:.3f}** |

Target: cotbridge <= 0.5x lm-eval: **{"met" if t["met"] else "missed"}**; accuracies equal within their 95% intervals
(sum {100 * a["interval95_sum"]:.1f} points): **{"yes" if a["equal_within_interval"] else "no"}**.
Agreement per question: prompts identical {100 * g["prompts_identical"]:.0f}%, generated texts identical (up to the
stop word and whitespace) {100 * g["texts_identical"]:.0f}%, extracted answers equal {100 * g["answers_equal"]:.0f}%,
verdicts equal {100 * g["verdicts_equal"]:.0f}%. Seconds spent waiting for quiet or re-measuring (not in the timings):
{t["lost_to_other_processes"]}.

Runs: {", ".join(f"{x['tool']} {x['eval_s']:.1f} s" for x in r["runs"])}.
Machine: {r["machine"]["cpu"]}, Python {r["machine"]["python"]}; load average {r["machine"]["load_before"]:.2f}
before, {r["machine"]["load_after"]:.2f} after. Created {r["created"]}.
"""


if __name__ == "__main__":
    main()
