"""cotbridge ``run_eval`` vs lm-evaluation-harness ``gsm8k_cot_zeroshot`` on the same model, data and settings.

Both tools load SmolLM2-135M-Instruct from the same GGUF in ../shared/data (transformers dequantises it
to fp32; both use the tokenizer.json next to it), run the first N GSM8K test questions as one-stage
zero-shot-CoT ("Q: {question}\\nA: Let's think step by step.", until ["Q:", "</s>", "<|im_end|>"],
greedy, 256 new tokens) with the same batch size, offline. lm-eval gets a copy of its own
gsm8k_cot_zeroshot task YAML whose only change is the data source (the local test.jsonl).

Reports both tools' accuracies (lm-eval strict-match and flexible-extract; cotbridge's "lmeval" pipeline),
wall times (model loading reported separately and excluded from the compared times), per-question
agreement of generations and extracted answers, and cross-scoring (each tool's extraction applied to the
other's generations) to separate generation differences from extraction differences.

    .venv/bin/python bench/eval_vs_lmeval.py               # 100 questions, batch size 16 (several minutes)
    .venv/bin/python bench/eval_vs_lmeval.py --limit 8     # quick check
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paths import DATA, MODEL_DIR, ROOT
from _quiet import QuietTimer
from _results import cpu_model
from eval_vs_lmeval_report import markdown

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
RESULTS = ROOT / "bench" / "results"
TASK = "gsm8k_cot_zeroshot_local"

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            self.seconds += time.perf_counter() - t0


def instrument(model: Any, qt: QuietTimer, batches: list[dict[str, Any]]) -> None:
    """Route the HF model's generate() (one call per batch, in both tools) through the quiet timer and log each
    batch."""
    orig = model.generate

    def generate(*args: Any, **kw: Any) -> Any:
        def reset() -> None:  # lm-eval's stop criteria remember which rows are done; start a re-run afresh
            for c in kw.get("stopping_criteria") or []:
                if hasattr(c, "done_tracker"):
                    c.done_tracker = [False] * len(c.done_tracker)

        out, dt = qt.run("generate", lambda: orig(*args, **kw), before_retry=reset)
        inp = kw["input_ids"] if "input_ids" in kw else args[0]
        batches.append(
            {
                "rows": int(out.shape[0]),
                "prompt_len": int(inp.shape[1]),
                "new_tokens": int(out.shape[1] - inp.shape[1]),
                "s": round(dt, 2),
            }
        )
        return out

    model.generate = generate


def write_task_yaml(folder: Path) -> dict[str, Any]:
    """lm-eval's own gsm8k_cot_zeroshot config with the dataset pointed at the local JSONL files."""
    import lm_eval
    import yaml

    src = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot-zeroshot.yaml"
    cfg = yaml.safe_load(src.read_text(encoding="utf-8"))
    cfg.pop("tag", None)
    cfg["task"] = TASK
    cfg["dataset_path"] = "json"
    cfg.pop("dataset_name", None)
    files = {"test": str(DATA / "gsm8k" / "test.jsonl")}
    if (DATA / "gsm8k" / "train.jsonl").exists():
        files["train"] = str(DATA / "gsm8k" / "train.jsonl")
    else:
        cfg["training_split"] = cfg["fewshot_split"] = None
    cfg["dataset_kwargs"] = {"data_files": files}
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg


# lm-eval's gsm8k_cot_zeroshot filters and exact_match normalisation, re-implemented to cross-score.
STRICT_RE = re.compile(r"The answer is (\-?[0-9\.\,]+).")
FLEX_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def lm_strict(text: str) -> str:
    m = STRICT_RE.findall(text)
    return m[0].strip() if m else "[invalid]"


def lm_flexible(text: str) -> str:
    m = FLEX_RE.findall(text)
    if not m:
        return "[invalid]"
    parts = [g for g in m[-1] if g]
    return parts[0].strip() if parts else "[invalid]"


def lm_norm(s: str) -> str:
    for pat in (",", r"\$", r"(?s).*#### ", r"\.$"):
        s = re.sub(pat, "", s)
    return s.lower()


def num(s: str | None) -> float | None:
    """A comparable number for an extracted answer (either tool), None if unparseable."""
    if s is None:
        return None
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def run_lmeval(limit: int, batch_size: int, workdir: Path, qt: QuietTimer, dtype: str = "float32") -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task_dir = workdir / "lmeval_tasks"
    task_dir.mkdir()
    task_cfg = write_task_yaml(task_dir)
    t0 = time.perf_counter()
    lm = HFLM(
        pretrained=str(MODEL_DIR),
        gguf_file=GGUF,
        tokenizer=str(MODEL_DIR),
        dtype=dtype,
        device="cpu",
        batch_size=batch_size,
    )
    load_s = time.perf_counter() - t0
    gen = Timed(lm.generate_until)
    lm.generate_until = gen
    batches: list[dict[str, Any]] = []
    instrument(lm.model, qt, batches)
    tm = TaskManager(include_path=str(task_dir))
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[TASK], limit=limit, log_samples=True, task_manager=tm, bootstrap_iters=0
    )
    eval_s = time.perf_counter() - t0
    metrics = res["results"][TASK]
    docs: dict[int, dict[str, Any]] = {}
    for s in res["samples"][TASK]:
        d = docs.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "target": s["target"]})
        args = s["arguments"]
        first = args["gen_args_0"] if isinstance(args, dict) else {"arg_0": args[0][0], "arg_1": args[0][1]}
        d["prompt"], d["gen_kwargs"] = first["arg_0"], first["arg_1"]
        d["output"] = s["resps"][0][0]
        fr = s["filtered_resps"][0]
        d[s["filter"]] = fr if isinstance(fr, str) else fr[0]
        d[f"{s['filter']}_correct"] = bool(s["exact_match"])
    return {
        **timings(load_s, eval_s, gen.seconds, qt, batches),
        "metrics": metrics,
        "docs": [docs[i] for i in sorted(docs)],
        "task_config": task_cfg,
        "max_gen_toks_default": lm.max_gen_toks,
        "version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
        "dtype": str(lm.model.dtype).removeprefix("torch."),
    }


def instrument_backend(backend: Any, qt: QuietTimer, batches: list[dict[str, Any]]) -> None:
    """Slot decoding makes one generate() call for all questions (no per-batch model.generate): time the whole call
    through the quiet timer, re-run if the machine was disturbed."""
    orig = backend.generate

    def generate(requests: Any, *a: Any, **kw: Any) -> Any:
        out, dt = qt.run("generate", lambda: orig(requests, *a, **kw))
        batches.append(
            {
                "rows": backend.batch_size,
                "requests": len(requests),
                "new_tokens": sum(c.completion_tokens for cs in out for c in cs),
                "s": round(dt, 2),
                **backend.stats,
            }
        )
        return out

    backend.generate = generate


def timings(load_s: float, eval_s: float, generate_s: float, qt: QuietTimer, batches: list[dict[str, Any]]) -> dict:
    """One run's times, less what other processes took from it (the quiet timer's re-runs and waits)."""
    return {
        "load_s": load_s,
        "eval_s": eval_s - qt.wasted_s,
        "generate_s": generate_s - qt.wasted_s,
        "lost_s": qt.wasted_s,
        "batches": batches,
        "quiet": qt.report(),
    }


def time_cotbridge_eval(cfg: Any, qt: QuietTimer, **backend_options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """cotbridge's evaluation of ``cfg`` with its model loading timed apart: (run_eval's summary, timings)."""
    from cotbridge.backends import get_backend
    from cotbridge.evaluation.run import run_eval

    t0 = time.perf_counter()
    backend = get_backend(cfg.backend, model=cfg.model, batch_size=cfg.batch_size, dtype=cfg.dtype, **backend_options)
    load_s = time.perf_counter() - t0
    batches: list[dict[str, Any]] = []
    if backend.decoding == "slots":
        instrument_backend(backend, qt, batches)
    else:
        instrument(backend.model, qt, batches)
    gen = Timed(backend.generate)
    backend.generate = gen
    t0 = time.perf_counter()
    summary = run_eval(cfg, backend=backend, progress=False)
    times = timings(load_s, time.perf_counter() - t0, gen.seconds, qt, batches)
    dtype = str(backend.model.dtype).removeprefix("torch.")
    return summary, {**times, "dtype": dtype, "decoding": backend.decoding, "lookahead": backend.lookahead}


def run_cotbridge(
    limit: int, batch_size: int, workdir: Path, qt: QuietTimer, dtype: str = "auto", decoding: str = "auto"
) -> dict[str, Any]:
    from cotbridge.evaluation.run import EvalConfig
    from cotbridge.jsonl import read_jsonl

    cfg = EvalConfig(
        model=str(MODEL_DIR),
        tasks=["gsm8k"],
        data_dir=str(DATA),
        limit=limit,
        mode="zero_shot_cot_single",
        batch_size=batch_size,
        dtype=dtype,
        output=str(workdir / "cotbridge"),
    )
    summary, times = time_cotbridge_eval(cfg, qt, gguf_file=cfg.gguf_file, decoding=decoding)
    records = list(read_jsonl(workdir / "cotbridge" / "gsm8k.jsonl"))
    return {**times, "metrics": summary["results"]["gsm8k"], "records": records}


# Whole evaluations in this order; "abba" pools two runs per tool so a drift in machine speed hits both alike.
ORDERS = {
    "lmeval-first": ["lmeval", "cotbridge"],
    "cotbridge-first": ["cotbridge", "lmeval"],
    "abba": ["lmeval", "cotbridge", "cotbridge", "lmeval"],
}


def generations(tool: str, res: dict[str, Any]) -> list[str]:
    return (
        [d["output"] for d in res["docs"]] if tool == "lmeval" else [r["samples"][0]["output"] for r in res["records"]]
    )


def public_args(argv: list[str]) -> list[str]:
    """The command-line arguments worth recording: without --save-raw/--load-raw and their (machine-local) paths."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--save-raw", "--load-raw"):
            skip = True
        elif not a.startswith(("--save-raw=", "--load-raw=")):
            out.append(a)
    return out


def plain(x: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return x


def compare(lm: dict[str, Any], cb: dict[str, Any]) -> dict[str, Any]:
    from cotbridge.answers.score import score_output

    docs, recs = lm["docs"], cb["records"]
    assert len(docs) == len(recs), (len(docs), len(recs))
    rows = []
    for d, r in zip(docs, recs):
        s = r["samples"][0]
        cb_out, lm_out = s["output"], d["output"]
        gold = r["gold"]
        cb_on_lm = score_output(lm_out, [gold], "number", pipeline="lmeval")  # cotbridge extraction, lm-eval text
        rows.append(
            {
                "doc_id": d["doc_id"],
                "gold": gold,
                "prompt_equal": d["prompt"] == r["prompt"],
                "output_equal": cb_out.strip() == lm_out.strip(),
                "cotbridge_pred": r["prediction"],
                "cotbridge_correct": r["correct"],
                "cotbridge_rule": s.get("rule"),
                "cotbridge_finish": s["finish_reason"],
                "cotbridge_tokens": s["usage"]["completion_tokens"],
                "lmeval_flexible": d.get("flexible-extract"),
                "lmeval_flexible_correct": d.get("flexible-extract_correct"),
                "lmeval_strict": d.get("strict-match"),
                "lmeval_strict_correct": d.get("strict-match_correct"),
                # cross-scoring
                "cotbridge_pipeline_on_lmeval_output": cb_on_lm.prediction,
                "cotbridge_pipeline_on_lmeval_output_correct": cb_on_lm.correct,
                "lmeval_flexible_on_cotbridge_output_correct": lm_norm(lm_flexible(cb_out)) == lm_norm(d["target"]),
                "lmeval_strict_on_cotbridge_output_correct": lm_norm(lm_strict(cb_out)) == lm_norm(d["target"]),
                "cotbridge_output": cb_out,
                "lmeval_output": lm_out,
            }
        )
    n = len(rows)
    frac = lambda key: sum(bool(x[key]) for x in rows) / n  # noqa: E731
    same_answer = lambda a, b: num(a) is not None and num(a) == num(b) or (num(a) is None and num(b) is None)  # noqa: E731
    agree_flex = sum(same_answer(x["cotbridge_pred"], x["lmeval_flexible"]) for x in rows) / n
    agree_same_pipeline = (
        sum(same_answer(x["cotbridge_pred"], x["cotbridge_pipeline_on_lmeval_output"]) for x in rows) / n
    )
    return {
        "n": n,
        "prompts_identical": frac("prompt_equal"),
        "generations_identical": frac("output_equal"),
        "answer_agreement_cotbridge_vs_lmeval_flexible": agree_flex,
        "answer_agreement_same_extraction": agree_same_pipeline,
        "correct_agreement_cotbridge_vs_lmeval_flexible": sum(
            x["cotbridge_correct"] == x["lmeval_flexible_correct"] for x in rows
        )
        / n,
        "cross_scoring": {
            "cotbridge_pipeline_on_lmeval_outputs_acc": frac("cotbridge_pipeline_on_lmeval_output_correct"),
            "lmeval_flexible_on_cotbridge_outputs_acc": frac("lmeval_flexible_on_cotbridge_output_correct"),
            "lmeval_strict_on_cotbridge_outputs_acc": frac("lmeval_strict_on_cotbridge_output_correct"),
        },
        "rows": rows,
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--order",
        choices=list(ORDERS),
        default="abba",
        help="abba: lm-eval, cotbridge, cotbridge, lm-eval, times pooled per tool (the run-to-run drift on "
        "these VMs is ~10%%, as large as the difference measured)",
    )
    ap.add_argument("--out", default=str(RESULTS / "eval_vs_lmeval"), help="output path without extension")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.15,
        help="re-run a generate() batch if other processes used more CPUs than this meanwhile",
    )
    ap.add_argument("--no-quiet", action="store_true", help="time everything once, whatever else runs on the machine")
    ap.add_argument(
        "--cotbridge-dtype",
        default="auto",
        help="cotbridge's weights: auto (bf16 on a CPU with native bf16, else fp32), float32, bfloat16",
    )
    ap.add_argument("--lmeval-dtype", default="float32", help="lm-eval's weights: float32 or bfloat16")
    ap.add_argument("--dtype", help="both tools' weights (float32 or bfloat16): the equal-numerics comparison")
    ap.add_argument("--cotbridge-decoding", default="auto", help="auto/slots, or batches (generate() per batch)")
    ap.add_argument("--save-raw", help="also save both tools' raw outputs to this JSON file")
    ap.add_argument("--load-raw", help="skip the runs: re-analyse raw outputs saved with --save-raw")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="re-write the .md from the existing .json (and a <out>_cotbridge_first.json run, if present)",
    )
    args = ap.parse_args()
    if args.dtype:
        args.cotbridge_dtype = args.lmeval_dtype = args.dtype
    return args


def run_in_order(args: argparse.Namespace) -> dict[str, Any]:
    """Both tools' results (``lmeval``, ``cotbridge``) from runs in ``args.order``, each in a new work folder; a
    tool's repeated run adds its times to its first run's and must generate the same texts. ``runs``: each run's
    times in order."""
    runners = {
        "lmeval": functools.partial(run_lmeval, dtype=args.lmeval_dtype),
        "cotbridge": functools.partial(run_cotbridge, dtype=args.cotbridge_dtype, decoding=args.cotbridge_decoding),
    }
    out: dict[str, Any] = {}
    runs = []
    with tempfile.TemporaryDirectory(prefix="eval_vs_lmeval_") as tmp:
        for i, name in enumerate(ORDERS[args.order]):
            print(f"running {name} (limit {args.limit}, batch size {args.batch_size}) ...", flush=True)
            qt = QuietTimer(max_foreign=args.max_foreign, enabled=not args.no_quiet)
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            res = plain(runners[name](args.limit, args.batch_size, work, qt))
            runs.append({"tool": name, **{k: round(res[k], 2) for k in ("load_s", "eval_s", "generate_s", "lost_s")}})
            print(
                f"  {name}: load {res['load_s']:.1f}s, eval {res['eval_s']:.1f}s "
                f"(generation {res['generate_s']:.1f}s)",
                flush=True,
            )
            if name not in out:
                out[name] = res
                continue
            # a repeat: its time is pooled with the first run's; its outputs must be the first run's
            first = out[name]
            if generations(name, res) != generations(name, first):
                sys.exit(f"{name}: a repeated run generated different texts; the timings would not be comparable")
            for k in ("eval_s", "generate_s", "lost_s"):
                first[k] += res[k]
    out["runs"] = runs
    return out


def settings(args: argparse.Namespace, lm: dict[str, Any], cb: dict[str, Any]) -> dict[str, Any]:
    """What both tools ran with, as the result page states it."""
    return {
        "model": str(MODEL_DIR.relative_to(ROOT.parent)) + "/" + GGUF,
        "dtype": f"lm-eval {lm.get('dtype', 'float32')}, cotbridge {cb.get('dtype', 'float32')} (dequantised GGUF)",
        "cotbridge_decoding": f"{cb.get('decoding', 'batches')} (prompt-lookup drafts: {cb.get('lookahead', 0)})",
        "tokenizer": "tokenizer.json in the model folder, both tools",
        "data": "../shared/data/gsm8k/test.jsonl",
        "limit": args.limit,
        "batch_size": args.batch_size,
        "order": args.order,
        "lmeval_task": f"{TASK}: lm-eval's gsm8k-cot-zeroshot.yaml with dataset_path json + local data_files",
        "lmeval_gen_kwargs_first_doc": lm["docs"][0]["gen_kwargs"],
        "lmeval_max_gen_toks": lm["max_gen_toks_default"],
        "cotbridge_mode": "zero_shot_cot_single (stop Q:, </s>, <|im_end|>; 256 max tokens; greedy; pipeline lmeval)",
        "lmeval_bootstrap_iters": 0,
        "timing": "eval_s excludes model loading for both (backend / HFLM built first, timed as load_s); "
        "eval_s includes data loading, prompt building, generation and scoring"
        + (
            ""
            if args.no_quiet
            else f"; each model.generate() batch (cotbridge's slot decoding: its one generate() call) is timed "
            f"when the machine is quiet and re-run if other processes used > {args.max_foreign} CPUs "
            "meanwhile; time spent waiting / in rejected runs is subtracted"
        ),
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    from importlib.metadata import version

    import torch
    import transformers

    return {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": version("lm_eval"),
        "python": platform.python_version(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def result_of(args: argparse.Namespace, out: dict[str, Any], load_before: tuple[float, float, float]) -> dict:
    """The result file's content: settings, machine, accuracy and time against their targets, the comparison."""
    lm, cb = out["lmeval"], out["cotbridge"]
    cmp = compare(lm, cb)
    lm_flex_acc, cb_acc = lm["metrics"].get("exact_match,flexible-extract"), cb["metrics"]["accuracy"]
    result = {
        "command": " ".join([".venv/bin/python", "bench/eval_vs_lmeval.py", *public_args(sys.argv[1:])]),
        "settings": settings(args, lm, cb),
        "machine": machine(load_before),
        "accuracy": {
            "lmeval_strict_match": lm["metrics"].get("exact_match,strict-match"),
            "lmeval_flexible_extract": lm_flex_acc,
            "cotbridge": cb_acc,
            "cotbridge_minus_lmeval_flexible_points": round(100 * (cb_acc - lm_flex_acc), 2),
            "target_points": 3.0,
            "met": abs(cb_acc - lm_flex_acc) <= 0.03,
        },
        "time_s": {
            "lmeval_load": round(lm["load_s"], 2),
            "cotbridge_load": round(cb["load_s"], 2),
            "lmeval_eval": round(lm["eval_s"], 2),
            "cotbridge_eval": round(cb["eval_s"], 2),
            "lmeval_generate": round(lm["generate_s"], 2),
            "cotbridge_generate": round(cb["generate_s"], 2),
            "ratio_cotbridge_over_lmeval_eval": round(cb["eval_s"] / lm["eval_s"], 3),
            "ratio_cotbridge_over_lmeval_generate": round(cb["generate_s"] / lm["generate_s"], 3),
            "target": "cotbridge <= 0.5 x lmeval, with >= 95% of extracted answers agreeing",
            "met": cb["eval_s"] <= 0.5 * lm["eval_s"] and cmp["answer_agreement_cotbridge_vs_lmeval_flexible"] >= 0.95,
            "lost_to_other_processes": {"lmeval": round(lm["lost_s"], 1), "cotbridge": round(cb["lost_s"], 1)},
        },
        "runs": out.get("runs", []),
        "batches": {"lmeval": lm["batches"], "cotbridge": cb["batches"]},
        "quiet_timer": {"lmeval": lm["quiet"], "cotbridge": cb["quiet"]},
        "cotbridge_metrics": cb["metrics"],
        "lmeval_metrics": lm["metrics"],
        "comparison": {k: v for k, v in cmp.items() if k != "rows"},
        "first_prompts": [
            {"lmeval": d["prompt"], "cotbridge": r["prompt"]} for d, r in zip(lm["docs"][:3], cb["records"][:3])
        ],
        "per_question": cmp["rows"],
    }
    return plain(result)


def main() -> None:
    args = parse_args()
    outp = Path(args.out)
    if args.render_only:
        result = json.loads(outp.with_suffix(".json").read_text(encoding="utf-8"))
        outp.with_suffix(".md").write_text(markdown(result, outp), encoding="utf-8")
        return
    load_before = os.getloadavg()
    if args.load_raw:
        out = json.loads(Path(args.load_raw).read_text(encoding="utf-8"))
    else:
        out = run_in_order(args)
        if args.save_raw:
            Path(args.save_raw).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    result = result_of(args, out, load_before)
    print(json.dumps({k: result[k] for k in ("accuracy", "time_s", "comparison")}, indent=2))
    outp.parent.mkdir(parents=True, exist_ok=True)
    outp.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    outp.with_suffix(".md").write_text(markdown(result, outp), encoding="utf-8")
    print(f"wrote {outp.with_suffix('.json')} and {outp.with_suffix('.md')}")


if __name__ == "__main__":
    main()
