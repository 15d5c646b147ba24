"""The README's worked example, run: a reasoning-model teacher's traces replayed from a file in the OpenR1-Math layout
-> `cotbridge traces` (math-verify checks each trace) -> `curate` with the thinking kept (and decontaminated against
MATH-500) -> `train` (SmolLM2-135M-Instruct, LoRA) -> `eval` on MATH-500 with math-verify, base model beside it.

No hub here, so both inputs are local copies (pass their paths):
- ``--traces-from``: JSONL rows ``{pid, type, level, question, answer, response}``, a model's step-by-step MATH
  solutions. Used: LzyFischer/icml_kd ``data/math/train_.jsonl`` and ``test_.jsonl`` (commit 30f6ce5): the same 59
  problems, two responses each, which become a row's two ``generations``. Each generation is written the way a
  reasoning model answers: ``<think>`` + the response + ``</think>`` + the final answer restated in ``\\boxed{}``;
  a response with no complete ``\\boxed{}`` is a trace cut at the token limit, written with its think block unclosed.
- ``--math500``: MATH-500 in the hub copy's fields (HuggingFaceH4/MATH-500). Used: MobileLLM/BudgetThinker
  ``evaluation/data/math500/test_ori.jsonl`` (commit f0466b9), byte for byte openai/prm800k's
  ``math_splits/test.jsonl`` (sha256 35dc4108...). With network, eval without ``--data-dir`` loads the hub copy.

Run: .venv/bin/python bench/reasoning_worked_example.py --traces-from A.jsonl --traces-from B.jsonl --math500 T.jsonl
(writes bench/results/reasoning_worked_example.{json,md}; scratch in bench/.work/reasoning_example, emptied first)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _paths import DATA, ROOT
from _results import write_results
from cotbridge.answers.extract import boxed_contents


def openr1_rows(sources: list[Path]) -> list[dict[str, Any]]:
    """One OpenR1-Math row per problem, one generation per source file that has it."""
    rows: dict[str, dict[str, Any]] = {}
    for source in sources:
        for line in source.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            row = rows.setdefault(
                rec["question"],
                {
                    "problem": rec["question"],
                    "answer": rec["answer"],
                    "problem_type": rec.get("type"),
                    "source": f"MATH ({source.parent.name}/{source.name} pid {rec.get('pid')})",
                    "generations": [],
                    "is_reasoning_complete": [],
                },
            )
            answer = (boxed_contents(rec["response"]) or [None])[-1]  # the last complete \boxed{}
            thinking = rec["response"].strip()
            if answer is None:  # cut at the token limit: the think block never closes
                row["generations"].append(f"<think>\n{thinking}")
            else:
                row["generations"].append(
                    f"<think>\n{thinking}\n</think>\n\nThe final answer is $\\boxed{{{answer}}}$."
                )
            row["is_reasoning_complete"].append(answer is not None)
    return list(rows.values())


def data_dir(work: Path, math500: Path) -> Path:
    """A --data-dir: MATH-500 where the task looks for it, and the shared sets so decontamination sees them too."""
    out = work / "data"
    (out / "reasoning").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(math500, out / "reasoning" / "math500.jsonl")
    for name in ("finetune_cot", "gsm8k", "aqua", "multihop"):
        link = out / name
        if (DATA / name).is_dir() and not link.exists():
            link.symlink_to(DATA / name)
    return out


def shown(arg: str) -> str:
    """An argument as the results show it: repository paths relative, the local input copies by file name only
    (where they came from is in this file's docstring), no machine's folders."""
    if Path(arg).is_absolute() and not arg.startswith(f"{ROOT}/"):
        return f"LOCAL_COPY/{Path(arg).name}"
    return arg.replace(f"{ROOT}/", "")


def cli(args: list[str], log: list[dict[str, Any]]) -> None:
    cmd = [sys.executable, "-m", "cotbridge", *args]
    shown_cmd = "cotbridge " + " ".join(shlex.quote(shown(a)) for a in args)
    print(f"$ {shown_cmd}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    log.append({"command": shown_cmd, "seconds": round(time.perf_counter() - t0, 1)})


def metrics(folder: Path) -> dict[str, Any]:
    m = json.loads((folder / "results.json").read_text(encoding="utf-8"))["results"]["math500"]
    outputs = [r["samples"][0]["output"] for r in map(json.loads, (folder / "math500.jsonl").open(encoding="utf-8"))]
    return {
        **{key: m[key] for key in ("n", "accuracy", "invalid", "complete")},
        "opens_think": sum(o.lstrip().startswith("<think>") for o in outputs),
        "closes_think": sum("</think>" in o for o in outputs),
    }


def reading(evals: dict[str, dict[str, Any]]) -> str:
    (base_name, base), (_, student) = evals.items()
    gain = (student["accuracy"] - base["accuracy"]) * 100
    return (
        f"The student writes the teacher's format: it opens a think block in {student['opens_think']} of "
        f"{student['n']} answers and closes it in {student['closes_think']} within the token limit. An answer is "
        "read only after `</think>`, so an unfinished trace counts as no answer. Accuracy: "
        f"{student['accuracy']:.0%} against {base['accuracy']:.0%} for {base_name} ({gain:+.1f} points). A 135M "
        "model trained on ~100 traces shows the pipeline working, not a MATH-500 result."
    )


def render(r: dict[str, Any]) -> str:
    c, d = r["curation"], r["decontamination"]
    lines = [
        "# Worked example: reasoning traces -> curate (thinking kept) -> student -> MATH-500 with math-verify",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Traces: {r['rows']} problems, {r['traces']} generations in the OpenR1-Math layout, built from "
        f"{', '.join(r['sources'])} ({r['unclosed']} with an unclosed think block). MATH-500: `{r['math500']}`.",
        f"Machine: {r['machine']}.",
        "",
        "## Steps",
        "",
        "| step | command | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {i + 1} | `{s['command']}` | {s['seconds']} |" for i, s in enumerate(r["steps"])]
    lines += [
        "",
        "## Curation",
        "",
        f"- teacher records: {c.get('input')}; kept for training: {c.get('kept')}",
        f"- dropped per filter: {json.dumps(c.get('dropped', {}))}",
        f"- decontamination against every registered task's test split: {d['dropped']} dropped "
        f"({json.dumps(d['by_task'])}); tasks not indexed: {len(d['skipped'])}",
    ]
    lines += [f"  - `{q}`" for q in d["examples"]]
    lines += [
        "",
        "## MATH-500 (math-verify)",
        "",
        "| model | questions | accuracy | no answer found | finished (EOS, think block closed) "
        "| opens `<think>` | closes it |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["eval"].items():
        lines.append(
            f"| {name} | {m['n']} | {m['accuracy']:.1%} | {m['invalid']:.0%} | {m['complete']:.0%} "
            f"| {m['opens_think']} | {m['closes_think']} |"
        )
    lines += ["", r["reading"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces-from", type=Path, action="append", required=True, help="repeat: one generation each")
    ap.add_argument("--math500", type=Path, required=True, help="MATH-500 JSONL (hub copy's fields)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--epochs", default="3")
    ap.add_argument("--max-length", default="1024")
    ap.add_argument("--limit", default="50", help="MATH-500 questions evaluated")
    ap.add_argument("--max-tokens", default="1024")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".work" / "reasoning_example")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reasoning_worked_example"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)  # a fresh run each time: the step timings are this run's
    args.work.mkdir(parents=True)
    rows = openr1_rows(args.traces_from)
    layout = args.work / "openr1_math.jsonl"
    layout.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = data_dir(args.work, args.math500)
    run = args.work / "run"
    steps: list[dict[str, Any]] = []
    traces = run / "teacher" / "traces.jsonl"
    cli(["traces", str(layout), "--layout", "openr1_math", "--task", "math500", "-o", str(traces)], steps)
    cli(
        ["curate", str(traces), "-o", str(run / "data"), "--format", "chat", "--rationale", "both"]
        + ["--max-thinking-words", "4000", "--data-dir", str(data)],
        steps,
    )
    cli(
        ["train", str(run / "data" / "train.jsonl"), "--model", args.model, "-o", str(run / "student")]
        + ["--set", f"max_length={args.max_length}", "--set", f"epochs={args.epochs}"]
        + ["--set", "lr=0.001", "--set", "lora_r=16", "--set", "lora_alpha=32"],  # the quickstart's LoRA settings
        steps,
    )
    evals = {}
    for name, model in (("base " + args.model, args.model), ("student", str(run / "student"))):
        folder = run / "eval" / name.split()[0]
        cli(
            ["eval", "--model", model, "--task", "math500", "--mode", "chat_cot", "--chat", "--data-dir", str(data)]
            + ["--limit", args.limit, "--max-tokens", args.max_tokens, "-o", str(folder)],
            steps,
        )
        evals[name] = metrics(folder)
    curation = json.loads((run / "data" / "curation.json").read_text(encoding="utf-8"))
    contamination = json.loads((run / "data" / "decontamination.json").read_text(encoding="utf-8"))
    summary = contamination["summary"]
    result = {
        "command": "python "
        + " ".join(shlex.quote(shown(a)) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "sources": [f"`{p.name}`" for p in args.traces_from],
        "math500": args.math500.name,
        "rows": len(rows),
        "traces": sum(len(r["generations"]) for r in rows),
        "unclosed": sum(not c for r in rows for c in r["is_reasoning_complete"]),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "steps": steps,
        "curation": {"input": curation["records"], "kept": curation["kept"], "dropped": curation["dropped"]},
        "decontamination": {
            "dropped": summary["dropped"],
            "by_task": summary["by_test_task"],
            "skipped": {task: why.replace(f"{ROOT}/", "") for task, why in summary["skipped_tasks"].items()},
            "examples": sorted({d["question"][:90] for d in contamination["dropped"]}),
        },
        "eval": evals,
        "reading": reading(evals),
    }
    write_results(args.out, result, render)


if __name__ == "__main__":
    main()
