"""LM-guided CoT (Lee et al. 2024) offline, end to end, on HotpotQA and 2WikiMultiHopQA subsets.

Runs ``recipes/lm_guided_cot_offline.yaml`` through ``cotbridge lmguided``: SmolLM2-135M-Instruct is the frozen
large model (the evaluation reaches it through ``cotbridge serve``'s OpenAI-compatible API); a from-scratch
2-layer Llama with SmolLM2's tokenizer is the rationale writer, distilled from the large model's rationales
whose answers were right (KD), then refined with TRL's GRPO on task F1 + aspect scores (RL). Prints and
writes the paper's table (standard, CoT, KD, KD+SC, KD+RL, KD+RL+SC; EM and F1 per dataset with n), the
mean aspect scores per row, the paper's EM beside ours with model sizes, the reward curve and whether its
mean over the last 20% of steps beats the first 20%.
Results: bench/results/lm_guided_cot.{json,md} and lm_guided_cot_reward_curve.png (run dir under runs/).

    .venv/bin/python bench/lm_guided_cot.py                         # the recipe as is (~1 h wall on a busy 2-core box)
    .venv/bin/python bench/lm_guided_cot.py --smoke                 # tiny sizes, minutes, results not written
    .venv/bin/python bench/lm_guided_cot.py --from rl --set rl.lr=5e-4   # redo RL and what follows
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from _paths import ROOT

RECIPE = ROOT / "recipes" / "lm_guided_cot_offline.yaml"
RESULTS = ROOT / "bench" / "results"
SMOKE = [
    "kd.train_limit=6",
    "rl.steps=2",
    "rl.train_limit=4",
    "eval.limit=3",
    "writer.train.epochs=1",
    "kd.min_f1=0.0",
    "score.judge_limit=1",
]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def render(summary: dict, settings: dict) -> str:
    report = (Path(settings["run_dir"]) / "report.md").read_text(encoding="utf-8")
    report = report.replace("![reward curve](reward_curve.png)", "![reward curve](lm_guided_cot_reward_curve.png)")
    rl = summary["rl"]
    kd = summary["kd"]
    teacher_em = ", ".join(f"{t} {100 * v['accuracy']:.1f}%" for t, v in kd["teacher"].items())
    kept = ", ".join(f"{t} {c['kept']}/{c['records']}" for t, c in kd["curation"].items())
    moved = "; ".join(
        f"{k.removeprefix('rewards/').removesuffix('/mean')} {v['first_20pct']:.4f} → {v['last_20pct']:.4f}"
        for k, v in rl.items()
        if isinstance(v, dict) and "first_20pct" in v
    )
    times = ", ".join(f"{k} {v['wall_s']:.0f} / {v['cpu_s']:.0f}" for k, v in summary.get("timings", {}).items())
    lines = [
        report.rstrip(),
        "",
        "## Settings and cost",
        "",
        f"- Contexts: {settings['context']}. Test questions: the first {settings['eval_limit']} of the seeded local "
        f"200-question test split of each dataset; training questions from the disjoint 300-question train split.",
        f"- KD: the large model's zero-shot-CoT on {settings['kd_train_limit']} training questions per dataset "
        f"(exact match {teacher_em}); kept {kept} rationales ({settings['kd_filter']}); {kd['examples']} examples, "
        f"final training loss {kd['train_loss_last']}.",
        f"- RL: {settings['rl']}; reward components first 20% → last 20% of steps: {moved}.",
        f"- Reward rose (last 20% > first 20%): **{rl['reward']['last_20pct'] > rl['reward']['first_20pct']}**.",
        f"- Time per stage (wall / this process's CPU, s): {times}" + f". Machine: {settings['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(RECIPE))
    ap.add_argument("--run-dir", default=None, help="default runs/<recipe name> (runs/lm_guided_smoke with --smoke)")
    ap.add_argument("--from", dest="from_stage", default=None, help="redo this stage and the later ones")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override a recipe key (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes to check the machinery; writes no bench results")
    args = ap.parse_args()
    os.chdir(ROOT)  # the recipe's data_dir and the run dir are relative to the repository root
    sys.path.insert(0, str(ROOT / "src"))
    import logging

    sys.path.insert(0, str(ROOT / "bench"))
    from _results import cpu_model
    from cotbridge.config import load_config
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig
    from cotbridge.recipes.lm_guided.recipe import run_lmguided

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S"
    )
    sets = (SMOKE if args.smoke else []) + args.sets
    cfg = load_config(LMGuidedConfig, args.config, sets)
    cfg.run_dir = args.run_dir or str(Path("runs") / ("lm_guided_smoke" if args.smoke else cfg.name))
    summary = run_lmguided(cfg, args.from_stage)
    weights = ", ".join(f"{k} {v:g}" for k, v in cfg.rl.weights.items())
    settings = {
        "run_dir": cfg.run_dir,
        "context": cfg.context.model_dump(),
        "eval_limit": cfg.eval.limit,
        "kd_train_limit": cfg.kd.train_limit,
        "machine": cpu_model(),
        "kd_filter": f"answer F1 ≥ {cfg.kd.min_f1}" if cfg.kd.min_f1 is not None else "exact-match correct answers",
        "rl": (
            f"{cfg.rl.algorithm.upper()}, {cfg.rl.steps} steps × {cfg.rl.batch_size} completions "
            f"({cfg.rl.num_generations} per prompt), lr {cfg.rl.lr:g}, KL beta {cfg.rl.beta:g} to the KD writer, "
            f"weights {weights}, task reward = large model's {cfg.rl.task_metric.upper()}"
        ),
        "sets": sets,
    }
    md = render(summary, settings)
    print(md)
    if args.smoke:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lm_guided_cot.json").write_text(
        json.dumps({"settings": settings, **summary}, indent=2) + "\n", encoding="utf-8"
    )
    (RESULTS / "lm_guided_cot.md").write_text(md, encoding="utf-8")
    if (Path(cfg.run_dir) / "reward_curve.png").exists():
        shutil.copy(Path(cfg.run_dir) / "reward_curve.png", RESULTS / "lm_guided_cot_reward_curve.png")
    print(f"wrote {RESULTS / 'lm_guided_cot.md'}")


if __name__ == "__main__":
    main()
