"""LM-guided chain-of-thought (``cotbridge lmguided CONFIG``; Lee et al. 2024) end to end, as stages on the engine.

teach   the frozen large model writes zero-shot-CoT rationales for training questions (``teach``, request cache)
kd      rationales whose answer is right train the small writer (:mod:`.kd_data`, ``train_student``)
rl      the writer is refined with GRPO/RLOO on task reward + aspect scores (``train.rl`` with :mod:`.rewards`)
eval    the paper's rows (standard, CoT, KD, KD+SC, KD+RL, KD+RL+SC) on the test split (:mod:`.eval_rows`);
        with ``large.serve`` the large model answers through ``cotbridge serve``'s OpenAI-compatible API
score   rationale-quality scores of every evaluated rationale (:mod:`.scoring`)
report  tables (EM/F1 per dataset with n, mean aspect scores per row), the reward curve, paper numbers beside

Stages skip work already on disk; ``--from STAGE`` redoes that stage and the later ones (large-model calls
stay in the request cache, so redoing them pays nothing again).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.errors import UserError
from cotbridge.jsonl import read_jsonl
from cotbridge.recipes.lm_guided.config import LMGuidedConfig
from cotbridge.recipes.lm_guided.inference import small_prompt
from cotbridge.recipes.lm_guided.resources import LargeModel, TaskData

log = logging.getLogger(__name__)
TEACH_SETTINGS = ("tasks", "data_dir", "context", "large", "seed", "kd.train_limit", "kd.samples", "kd.temperature")


@RECIPES.register("lm_guided")
class LMGuidedCoT:
    def __init__(self, config: LMGuidedConfig, progress: bool = True, large: Any = None):
        """``large``: a backend object to use as the large model instead of building one from ``config.large``."""
        names = [r.name for r in config.eval.rows]
        if len(set(names)) != len(names):
            raise UserError(f"eval row names must be unique, got {names}")
        self.config = self.cfg = config
        self.progress = progress
        self.run_dir = self.dir = config.directory()
        self.data = TaskData(config)
        self.large = LargeModel(config, large)
        self._teach_paths: dict[str, Path] | None = None

    def stages(self) -> list[Stage]:
        d = self.dir
        return [
            Stage("teach", self.teach, lambda: [d / "teacher"], "the large model's CoT", settings=TEACH_SETTINGS),
            Stage(
                "kd", self.kd, lambda: [d / "data", d / "writer" / "kd"], "distil into the writer", ("kd", "writer")
            ),
            Stage("rl", self.rl, lambda: [d / "writer" / "rl"], "GRPO/RLOO on reward + aspect scores", ("rl",)),
            Stage("eval", self.evaluate, lambda: [d / "eval"], "the paper's rows on the test split", ("eval",)),
            Stage("score", self.score, lambda: [d / "scores"], "rationale-quality scores", settings=("score",)),
            Stage(
                "report",
                self.report,
                lambda: [d / "report.md", d / "results.json", d / "reward_curve.png"],
                "tables, reward curve, paper numbers",
                settings=("name",),
            ),
        ]

    def teach(self) -> dict[str, Path]:
        from cotbridge.teach import Teacher

        if self._teach_paths is None:
            self._teach_paths = {}
            for task in self.data.tasks:
                prompts = self.data.prompts(task)  # the answer stage exactly as the evaluation asks it
                teacher = Teacher(
                    self.cfg.teach_config(task.name),
                    backend=self.large.client,  # called only when a rationale is still owed
                    progress=self.progress,
                    examples=self.data.examples(task, "train", self.cfg.kd.train_limit),
                    answer_request=lambda ex, _first, rationale, p=prompts: p.answer(ex, rationale),
                )
                summary = teacher.run()
                log.info("%s: large-model CoT, exact match %.3f", task.name, summary["accuracy"])
                self._teach_paths[task.name] = teacher.records.path
        return self._teach_paths

    def kd(self) -> Path:
        from cotbridge.recipes.lm_guided.kd_data import kd_examples
        from cotbridge.train.scratch import init_scratch_model
        from cotbridge.train.sft import train_student

        out = self.dir / "writer" / "kd"

        def make() -> dict[str, Any]:
            rows = unit(
                self.dir / "data" / "kd.jsonl",
                lambda: kd_examples(self.cfg.kd, self.data, self.teach(), self.dir / "data"),
                read=lambda path: list(read_jsonl(path)),
            )
            w = self.cfg.writer
            texts = [r["prompt"] + r["completion"] for r in rows]  # what a trained tokenizer learns from
            init = w.model or str(init_scratch_model(self.dir / "writer" / "init", w.scratch, texts))
            stats = train_student(w.train.model_copy(update={"model": init, "output_dir": str(out)}), rows)
            return {**stats, "init": init, "examples": len(rows)}

        unit(out / "done.json", make)
        return out

    def rl(self) -> Path:
        from cotbridge.recipes.lm_guided.rewards import build_rewards
        from cotbridge.train.rl import train_rl

        out = self.dir / "writer" / "rl"

        def make() -> dict[str, Any]:
            kd_path = self.kd()
            prompts, by_key = [], {}
            for task in self.data.tasks:
                for ex in self.data.examples(task, "train", self.cfg.rl.train_limit):
                    by_key[f"{task.name}/{ex.id}"] = (task, ex)
                    prompts.append({"prompt": small_prompt(ex), "example_key": f"{task.name}/{ex.id}"})
            self.large.hf()  # loaded first, so the scorers find it in the pool
            funcs, weights = build_rewards(
                self.cfg.rl, by_key, self.large.client(), self.data.prompts, pool=self.large.pool
            )
            return train_rl(self.cfg.rl.model_copy(update={"output_dir": str(out)}), kd_path, prompts, funcs, weights)

        unit(out / "done.json", make)
        return out

    def writer(self, which: str) -> Any:
        from cotbridge.backends.hf import HFBackend

        path = self.kd() if which == "kd" else self.rl()
        return HFBackend(str(path), batch_size=self.cfg.writer.batch_size)

    def evaluate(self) -> dict[str, dict[str, Any]]:
        from cotbridge.recipes.lm_guided.eval_rows import evaluate_rows

        return evaluate_rows(self.cfg, self.data, self.large, self.writer, self.dir, self.progress)

    def score(self) -> dict[str, dict[str, Any]]:
        from cotbridge.recipes.lm_guided.scoring import score_rationales

        out = self.dir / "scores"
        return unit(out / "means.json", lambda: score_rationales(self.cfg, self.data, self.large, self.dir, out))

    def report(self) -> dict[str, Any]:
        from cotbridge.recipes.lm_guided.report import write_lmguided_report

        self.large.record(self.dir / "eval" / "large_model.json")
        return write_lmguided_report(self.cfg, self.dir, self.evaluate(), self.score())

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        return results["report"]


def run_lmguided(
    cfg: LMGuidedConfig,
    from_stage: str | None = None,
    until: str | None = None,
    progress: bool = True,
    large: Any = None,
) -> dict[str, Any]:
    return run_recipe(LMGuidedCoT(cfg, progress, large), from_stage, until)
