"""LM-guided chain-of-thought (``cotbridge lmguided CONFIG``; Lee et al. 2024) end to end, as stages on the engine.

teach   the frozen large model writes zero-shot-CoT rationales for training questions (``teach``, request cache)
kd      rationales whose answer is right train the small writer (``curate``'s filters, ``train_student``)
rl      the writer is refined with GRPO/RLOO on task reward + aspect scores (``train.rl`` with ``rewards``)
eval    the paper's rows (standard, CoT, KD, KD+SC, KD+RL, KD+RL+SC) on the test split (:mod:`.inference`);
        with ``large.serve`` the large model answers through ``cotbridge serve``'s OpenAI-compatible API
score   rationale-quality scores of every evaluated rationale (:mod:`cotbridge.quality`)
report  tables (EM/F1 per dataset with n, mean aspect scores per row), the reward curve, paper numbers beside

Stages skip work already on disk; ``--from STAGE`` redoes that stage and the later ones (large-model calls
stay in the request cache, so redoing them pays nothing again).
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.errors import UserError
from cotbridge.inference.two_stage import sampling_temperature
from cotbridge.jsonl import read_json, read_jsonl, write_json, write_jsonl
from cotbridge.quality.base import ModelPool
from cotbridge.recipes.lm_guided.config import LMGuidedConfig
from cotbridge.recipes.lm_guided.inference import (
    ANSWER_PIPELINE,
    LargePrompts,
    RowSpec,
    rationale_items,
    run_row,
    small_prompt,
    trim_context,
)
from cotbridge.tasks import Example, parse_task_spec

log = logging.getLogger(__name__)


@RECIPES.register("lm_guided")
class LMGuidedCoT:
    def __init__(self, config: LMGuidedConfig, progress: bool = True, large: Any = None):
        """``large``: a backend object to use as the large model instead of building one from ``config.large``."""
        cfg = config
        names = [r.name for r in cfg.eval.rows]
        if len(set(names)) != len(names):
            raise UserError(f"eval row names must be unique, got {names}")
        self.config = self.cfg = cfg
        self.progress = progress
        self.run_dir = self.dir = cfg.directory()
        self.models = ModelPool()  # the large model once loaded; the fluency and embedding scorers draw from it
        self.tasks = [parse_task_spec(t)[0] for t in cfg.tasks]
        self._examples: dict[tuple[str, str], list[Example]] = {}
        self._hf: Any = None
        self._large: Any = self.cached(large) if large is not None else None
        self._injected = large is not None
        self._teach_paths: dict[str, Path] | None = None
        self._prompts: dict[str, LargePrompts] = {}

    # -- shared pieces -------------------------------------------------------------------------------------
    def examples(self, task: Any, split: str, limit: int | None) -> list[Example]:
        key = (task.name, split)
        if key not in self._examples:
            self._examples[key] = [trim_context(ex, self.cfg.context) for ex in task.load(split, self.cfg.data_dir)]
        return self._examples[key][:limit] if limit else self._examples[key]

    def prompts_for(self, task: Any) -> LargePrompts:
        if task.name not in self._prompts:
            lg = self.cfg.large
            self._prompts[task.name] = LargePrompts(
                task,
                chat=lg.chat,
                rationale_max_tokens=lg.rationale_max_tokens,
                answer_max_tokens=lg.answer_max_tokens,
            )
        return self._prompts[task.name]

    def hf(self) -> Any:
        """The large model loaded in this process (hf backend only), shared by calls, serving and scorers."""
        if self._hf is None and self.cfg.large.backend == "hf" and not self._injected:
            from cotbridge.backends.hf import HFBackend

            self._hf = HFBackend(self.cfg.large.model, batch_size=self.cfg.large.batch_size, **self.cfg.large.options)
            self.models.put(self.cfg.large.model, self._hf.model, self._hf.tokenizer)
        return self._hf

    def cache(self) -> Any:
        from cotbridge.backends.request_cache import RequestCache

        return None if self.cfg.cache == "off" else RequestCache(self.cfg.cache or self.dir / "requests.sqlite")

    def cached(self, backend: Any) -> Any:
        from cotbridge.backends.request_cache import CachedBackend

        cache = self.cache()
        return CachedBackend(backend, cache) if cache is not None else backend

    def large(self) -> Any:
        """The large model for in-process calls (teaching, RL rewards, the judge), through the request cache."""
        if self._large is None:
            from cotbridge.backends import get_backend
            from cotbridge.backends.secrets import check_no_literal_secrets

            lg = self.cfg.large
            if lg.backend == "hf":
                base = self.hf()
            else:
                check_no_literal_secrets(lg.options)
                base = get_backend(lg.backend, model=lg.model, **lg.options)
            self._large = self.cached(base)
        return self._large

    # -- stages ---------------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        d = self.dir
        return [
            Stage(
                "teach",
                self.teach,
                lambda: [d / "teacher"],
                "the large model's CoT on training questions",
                settings=(
                    "tasks",
                    "data_dir",
                    "context",
                    "large",
                    "seed",
                    "kd.train_limit",
                    "kd.samples",
                    "kd.temperature",
                ),
            ),
            Stage(
                "kd",
                self.kd,
                lambda: [d / "data", d / "writer" / "kd"],
                "distil correct rationales into the writer",
                settings=("kd", "writer"),
            ),
            Stage(
                "rl",
                self.rl,
                lambda: [d / "writer" / "rl"],
                "GRPO/RLOO on task reward + aspect scores",
                settings=("rl",),
            ),
            Stage(
                "eval", self.evaluate, lambda: [d / "eval"], "the paper's rows on the test split", settings=("eval",)
            ),
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
        from cotbridge.teach import TeachConfig, Teacher, TeacherConfig

        if self._teach_paths is not None:
            return self._teach_paths

        lg, kd = self.cfg.large, self.cfg.kd
        paths = {}
        for task in self.tasks:
            cfg = TeachConfig(
                task=task.name,
                split="train",
                data_dir=self.cfg.data_dir,
                limit=kd.train_limit,
                teacher=TeacherConfig(backend=lg.backend, model=lg.model),
                mode="zero_shot_cot",
                samples=kd.samples,
                temperature=kd.temperature,
                max_tokens=lg.rationale_max_tokens,
                answer_max_tokens=lg.answer_max_tokens,
                chat=lg.chat,
                seed=self.cfg.seed,
                pipeline=ANSWER_PIPELINE,
                run_dir=str(self.dir),
                cache="off",
            )  # self.large() is already cached
            # Contexts trimmed like everywhere else; the answer stage exactly as the evaluation asks it.
            prompts = self.prompts_for(task)
            teacher = Teacher(
                cfg,
                backend=self.large(),
                progress=self.progress,
                examples=self.examples(task, "train", kd.train_limit),
                answer_request=lambda ex, _first, rationale, p=prompts: p.answer(ex, rationale),
            )
            summary = teacher.run()
            log.info(
                "%s: large-model CoT on %d training questions, exact match %.3f",
                task.name,
                summary["questions"],
                summary["accuracy"],
            )
            paths[task.name] = teacher.records.path
        self._teach_paths = paths
        return paths

    def kd_data(self) -> list[dict[str, Any]]:
        out = self.dir / "data"
        return unit(out / "kd.jsonl", lambda: self._kd_data(out), read=lambda path: list(read_jsonl(path)))

    def _kd_data(self, out: Path) -> list[dict[str, Any]]:
        from cotbridge.curate import CurateSettings, curate
        from cotbridge.prompts.formats import clean_rationale

        kd, data, stats = self.cfg.kd, [], {}
        settings = CurateSettings(filters=list(kd.filters))
        if kd.min_f1 is not None:  # graded correctness: F1 of the large model's answer against every gold alias
            settings.filters = [f for f in settings.filters if f != "correct"] + ["answer_f1"]
            settings.min_answer_f1 = kd.min_f1
        for task, path in zip(self.tasks, self.teach().values()):
            by_id = {ex.id: ex for ex in self.examples(task, "train", kd.train_limit)}
            records = [
                {**r, "golds": by_id[r["example_id"]].golds} for r in read_jsonl(path) if r["example_id"] in by_id
            ]
            kept, st = curate(records, settings)
            stats[task.name] = {**st, "min_f1": kd.min_f1}
            data += [
                {
                    "prompt": small_prompt(by_id[r["example_id"]]),
                    "completion": " " + clean_rationale(r["rationale"]),
                    "task": task.name,
                    "example_id": r["example_id"],
                    "sample": r["sample"],
                }
                for r in kept
            ]
        write_json(out / "curation.json", stats)
        write_jsonl(out / "kd.jsonl", data)
        return data

    def kd(self) -> Path:
        from cotbridge.train.scratch import init_scratch_model
        from cotbridge.train.sft import train_student

        out = self.dir / "writer" / "kd"

        def make() -> dict[str, Any]:
            data = self.kd_data()
            w = self.cfg.writer
            texts = [d["prompt"] + d["completion"] for d in data]  # what a trained tokenizer learns from
            init = w.model or str(init_scratch_model(self.dir / "writer" / "init", w.scratch, texts))
            stats = train_student(w.train.model_copy(update={"model": init, "output_dir": str(out)}), data)
            return {**stats, "init": init, "examples": len(data)}

        unit(out / "done.json", make)
        return out

    def rl(self) -> Path:
        from cotbridge.recipes.lm_guided.rewards import build_rewards
        from cotbridge.train.rl import train_rl

        out = self.dir / "writer" / "rl"

        def make() -> dict[str, Any]:
            kd_path = self.kd()
            prompts, by_key = [], {}
            for task in self.tasks:
                for ex in self.examples(task, "train", self.cfg.rl.train_limit):
                    key = f"{task.name}/{ex.id}"
                    by_key[key] = (task, ex)
                    prompts.append({"prompt": small_prompt(ex), "example_key": key})
            self.hf()  # load the large model first, so the scorers find it in the pool
            funcs, weights = build_rewards(self.cfg.rl, by_key, self.large(), self.prompts_for, pool=self.models)
            return train_rl(self.cfg.rl.model_copy(update={"output_dir": str(out)}), kd_path, prompts, funcs, weights)

        unit(out / "done.json", make)
        return out

    def writer(self, which: str) -> Any:
        from cotbridge.backends.hf import HFBackend

        path = self.kd() if which == "kd" else self.rl()
        return HFBackend(str(path), batch_size=self.cfg.writer.batch_size)

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """{row: {task: metrics}}; per-question records in eval/<row>/<task>.jsonl."""
        results: dict[str, dict[str, Any]] = {}
        todo = [
            (row, task)
            for row in self.cfg.eval.rows
            for task in self.tasks
            if not (self.dir / "eval" / row.name / f"{task.name}.metrics.json").exists()
        ]
        writers: dict[str, Any] = {}
        with ExitStack() as stack:
            large = self.eval_backend(stack) if todo else None
            for row in self.cfg.eval.rows:
                for task in self.tasks:
                    out = self.dir / "eval" / row.name
                    if (row, task) in todo:
                        if row.rationale in ("kd", "rl") and row.rationale not in writers:
                            writers[row.rationale] = self.writer(row.rationale)
                        temp = sampling_temperature(row.temperature, row.k)
                        spec = RowSpec(
                            row.name,
                            "none" if row.rationale == "none" else "large" if row.rationale == "large" else "small",
                            k=row.k,
                            temperature=temp,
                        )
                        exs = self.examples(task, self.cfg.eval.split, self.cfg.eval.limit)
                        log.info("eval %s on %s (%d questions, k=%d)", row.name, task.name, len(exs), row.k)
                        records, metrics = run_row(
                            task,
                            exs,
                            spec,
                            large,
                            self.prompts_for(task),
                            writers.get(row.rationale),
                            self.cfg.writer.max_tokens,
                            self.cfg.seed,
                            self.progress,
                        )
                        write_jsonl(out / f"{task.name}.jsonl", records)
                        write_json(out / f"{task.name}.metrics.json", metrics)
                    results.setdefault(row.name, {})[task.name] = read_json(out / f"{task.name}.metrics.json")
        return results

    def eval_backend(self, stack: ExitStack) -> Any:
        """The large model for evaluation: behind ``cotbridge serve`` when configured, else the in-process one."""
        lg = self.cfg.large
        if not (lg.serve and lg.backend == "hf") or self._injected:
            return self.large()
        from cotbridge.backends.openai_api import OpenAIBackend
        from cotbridge.server import running_server

        url = stack.enter_context(running_server(self.hf(), model_name=lg.model))
        log.info("large model served at %s", url)
        client = OpenAIBackend(lg.model, base_url=url, api="chat" if lg.chat else "completions", concurrency=2)
        return self.cached(client)

    def score(self) -> dict[str, dict[str, Any]]:
        """{task: {row: {"scorer/aspect": {mean, n}}}}; scored items in scores/<task>.jsonl."""
        out = self.dir / "scores"
        return unit(out / "means.json", lambda: self._score(out))

    def _score(self, out: Path) -> dict[str, dict[str, Any]]:
        from cotbridge.quality.scoring import build_scorers, mean_scores, score_items

        sc = self.cfg.score
        self.hf()
        options = {k: dict(v) for k, v in sc.options.items()}
        if "judge" in sc.scorers and "backend" not in options.get("judge", {}):
            options.setdefault("judge", {})["backend_obj"] = self.large()
        scorers = build_scorers(sc.scorers, options, pool=self.models)
        means = {}
        for task in self.tasks:
            exs = self.examples(task, self.cfg.eval.split, self.cfg.eval.limit)
            items = [
                it
                for row in self.cfg.eval.rows
                for it in rationale_items(list(read_jsonl(self.dir / "eval" / row.name / f"{task.name}.jsonl")), exs)
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

    def report(self) -> dict[str, Any]:
        from cotbridge.recipes.lm_guided.report import write_lmguided_report

        if self._hf is not None:
            write_json(
                self.dir / "eval" / "large_model.json",
                {"model": self.cfg.large.model, "params": sum(p.numel() for p in self._hf.model.parameters())},
            )
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
