"""LM-guided CoT's ``score`` stage: rationale-quality scores of every evaluated rationale (cotbridge.quality);
``scores/<task>.jsonl`` holds the scored items, the stage returns the means per row."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cotbridge.jsonl import read_jsonl, write_jsonl
from cotbridge.recipes.lm_guided.config import LMGuidedConfig
from cotbridge.recipes.lm_guided.inference import rationale_items
from cotbridge.recipes.lm_guided.resources import LargeModel, TaskData


def score_rationales(
    cfg: LMGuidedConfig, data: TaskData, large: LargeModel, run_dir: Path, out: Path
) -> dict[str, dict[str, Any]]:
    """{task: {row: {"scorer/aspect": {mean, n}}}}."""
    from cotbridge.quality.scoring import build_scorers, mean_scores, score_items

    sc = cfg.score
    large.hf()  # loaded first, so the scorers find it in the pool
    options = {k: dict(v) for k, v in sc.options.items()}
    if "judge" in sc.scorers and "backend" not in options.get("judge", {}):
        options.setdefault("judge", {})["backend_obj"] = large.client()
    scorers = build_scorers(sc.scorers, options, pool=large.pool, where="score.options")
    means = {}
    for task in data.tasks:
        exs = data.examples(task, cfg.eval.split, cfg.eval.limit)
        items = [
            it
            for row in cfg.eval.rows
            for it in rationale_items(list(read_jsonl(run_dir / "eval" / row.name / f"{task.name}.jsonl")), exs)
        ]
        scored = score_items(items, [s for s in scorers if s.name != "judge"])
        judge = [s for s in scorers if s.name == "judge"]
        if judge:  # the judge is slow: only the first judge_limit rationales of each row
            counts: Counter[str] = Counter()
            picked = []
            for i, it in enumerate(items):
                if sc.judge_limit is None or counts[it["row"]] < sc.judge_limit:
                    counts[it["row"]] += 1
                    picked.append(i)
            for i, rec in zip(picked, score_items([items[i] for i in picked], judge)):
                scored[i]["scores"].update(rec["scores"])
        write_jsonl(out / f"{task.name}.jsonl", scored)
        means[task.name] = mean_scores(scored)
    return means
