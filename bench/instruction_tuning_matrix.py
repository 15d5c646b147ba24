"""Instruction-tuning-CoT offline: replayed real teachers of two families (OpenAI GPT, Google PaLM) tune
SmolLM2-135M-Instruct on GSM8K, CommonsenseQA and SVAMP; every student is tested on all three tasks.

Runs ``cotbridge instruct recipes/instruction_tuning_replay_offline.yaml`` (resumable: a rerun reuses what
is done) and copies the matrix to bench/results/instruction_tuning_matrix.{json,md,png}, adding stage
times, the machine, and a check that no test question of the matrix was among any student's training
questions (by task id and by question text).

Run: .venv/bin/python bench/instruction_tuning_matrix.py [--run-dir runs/instruction-tuning-replay] [--set k=v ...]
"""

from __future__ import annotations

import os

# One OpenMP thread: on this 2-core machine shared with other jobs, two spinning threads per process made a
# 4x32-token generate() take 77-102 s instead of 4.7 s (measured while two other model jobs ran).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _paths import ROOT

RECIPE = ROOT / "recipes" / "instruction_tuning_replay_offline.yaml"


def contamination_check(run_dir: Path, data_dir: str | None, rows: list[str]) -> dict:
    """Test questions of the matrix that appear among any row's training examples (must be none)."""
    from cotbridge.backends.replay import normalize_question
    from cotbridge.jsonl import read_json, read_jsonl
    from cotbridge.tasks import get_task

    trained_ids, trained_text, n_train = set(), set(), 0
    for row in rows:
        for ex in read_jsonl(run_dir / "data" / row / "train.jsonl"):
            n_train += 1
            trained_ids.add((ex["task"], str(ex["example_id"])))
            trained_text.add(normalize_question(ex["question"]))
    sets = read_json(run_dir / "eval" / "test_sets.json")
    out = {"training_examples": n_train, "per_task": {}}
    for task, ts in sets.items():
        by_id = {e.id: e for e in get_task(task).load(ts["split"], data_dir)}
        out["per_task"][task] = {
            "test_questions": len(ts["ids"]),
            "excluded_before_selection": ts["excluded_trained"],
            "overlap_by_id": sum((task, i) in trained_ids for i in ts["ids"]),
            "overlap_by_text": sum(normalize_question(by_id[i].question) in trained_text for i in ts["ids"]),
        }
    out["clean"] = all(v["overlap_by_id"] == 0 and v["overlap_by_text"] == 0 for v in out["per_task"].values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/instruction-tuning-replay")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    os.chdir(ROOT)  # the recipe names ../shared/data relative to the repository root

    import logging

    import torch

    from cotbridge.config import load_config
    from cotbridge.recipes.instruct.config import InstructConfig
    from cotbridge.recipes.instruct.recipe import run_instruct

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S"
    )
    cfg = load_config(InstructConfig, RECIPE, [f"run_dir={args.run_dir}", *args.sets])
    t0, cpu0 = time.perf_counter(), time.process_time()
    summary = run_instruct(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    run_dir = cfg.directory()

    stats: dict = {"training": {}, "eval_wall_s": {}}
    for row in [r.label() for r in cfg.resolved_rows()]:
        done = (
            json.loads((run_dir / "students" / row / "done.json").read_text())
            if (run_dir / "students" / row / "done.json").exists()
            else {}
        )
        stats["training"][row] = {
            "steps": done.get("global_step"),
            "examples": done.get("examples"),
            "losses": done.get("losses"),
            "wall_s": done.get("wall_s"),
        }
    for cell in sorted((run_dir / "eval").glob("*/*.json")):
        stats["eval_wall_s"][f"{cell.parent.name}/{cell.stem}"] = json.loads(cell.read_text())["metrics"].get(
            "wall_time_s"
        )
    started = time.time() - wall
    trained = sum(
        (run_dir / "students" / r.label() / "done.json").stat().st_mtime >= started
        for r in cfg.resolved_rows()
        if (run_dir / "students" / r.label() / "done.json").exists()
    )
    evaluated = sum(p.stat().st_mtime >= started for p in (run_dir / "eval").glob("*/*.json"))
    check = contamination_check(run_dir, cfg.data_dir, [r.label() for r in cfg.resolved_rows()])
    teach = {
        k: {"records": v["records"], "teacher_accuracy": round(v["accuracy"], 4), "split": v["split"]}
        for k, v in summary["teach"].items()
    }
    result = {
        **{k: v for k, v in summary.items() if k != "teach"},
        "teach": teach,
        "contamination": check,
        "this_run": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "note": "a rerun reuses finished stages"},
        "students": stats,
        "recipe": str(RECIPE.relative_to(ROOT)),
        "overrides": args.sets,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    # Earlier runs' times stay: a rerun that only redraws the report must not hide what the full run cost.
    old = out / "instruction_tuning_matrix.json"
    runs = json.loads(old.read_text()).get("runs", []) if old.exists() else []
    result["runs"] = [
        *runs,
        {
            **result["this_run"],
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "note": f"trained {trained} student(s), evaluated {evaluated} cell(s)",
        },
    ]
    (out / "instruction_tuning_matrix.json").write_text(json.dumps(result, indent=1) + "\n")
    shutil.copyfile(run_dir / "matrix.png", out / "instruction_tuning_matrix.png")
    md = (
        (run_dir / "matrix.md")
        .read_text()
        .replace("![heatmap](matrix.png)", "![heatmap](instruction_tuning_matrix.png)")
    )
    teach_lines = ["| teacher records | split | records | teacher accuracy |", "|---|---|---|---|"]
    teach_lines += [
        f"| {k} | {v['split']} | {v['records']} | {100 * v['teacher_accuracy']:.1f} |" for k, v in teach.items()
    ]
    tests = ", ".join(
        f"{t}: {v['test_questions']} (excluded {v['excluded_before_selection']} trained-on)"
        for t, v in check["per_task"].items()
    )
    md += (
        "\n## Teachers (replayed) and test sets\n\n" + "\n".join(teach_lines) + "\n\n"
        f"Test questions per column: {tests}. Overlap with the {check['training_examples']} training examples "
        f"(by id and by question text): {'none' if check['clean'] else 'FOUND'}.\n\n"
        "Runs (wall / CPU seconds of this process): "
        + "; ".join(
            f"{r['finished']}: {r['wall_s']:.0f} s / {r['cpu_s']:.0f} s" + (f" ({r['note']})" if r.get("note") else "")
            for r in result["runs"]
        )
        + ".\n\n"
        f"Command: `.venv/bin/python bench/instruction_tuning_matrix.py` (recipe `{RECIPE.relative_to(ROOT)}`); "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} shared CPUs.\n"
    )
    (out / "instruction_tuning_matrix.md").write_text(md)
    print(md)
    if not check["clean"]:
        raise SystemExit("a test question of the matrix was trained on")


if __name__ == "__main__":
    main()
