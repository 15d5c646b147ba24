"""Fine-tune-CoT (``cotbridge run CONFIG``): teach -> curate -> train -> eval -> report, stages on the engine.

Each method in the config is a row of the final report: a prompted baseline (no training), vanilla
fine-tuning (answers only), or distillation (teacher rationales in a student format, D per question).
Stages skip work already done; ``--from STAGE`` redoes that stage and the ones after it (teacher
calls stay in the request cache, so redoing ``teach`` pays nothing again).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotbridge.curate import CurateSettings, curate_file, curate_vanilla
from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.errors import UserError
from cotbridge.jsonl import read_jsonl
from cotbridge.prompts.formats import FORMATS
from cotbridge.recipes.eval_stage import evaluate_model
from cotbridge.recipes.finetune_cot.config import MethodSpec, RunConfig
from cotbridge.tasks import parse_task_spec
from cotbridge.teach import run_teach
from cotbridge.teach.records import record_files

log = logging.getLogger(__name__)


@RECIPES.register("finetune_cot")
class FinetuneCoT:
    def __init__(self, config: RunConfig, progress: bool = True):
        names = [m.name for m in config.methods]
        if len(set(names)) != len(names):
            raise UserError(f"method names must be unique, got {names}")
        for m in config.methods:
            if m.kind == "distill":
                FORMATS.get(m.format)
        self.config, self.progress = config, progress
        self.run_dir = config.directory()
        self.task, self.task_params = parse_task_spec(config.task)

    def stages(self) -> list[Stage]:
        distilled = [m for m in self.config.methods if m.kind == "distill"]
        trained = [m for m in self.config.methods if m.kind != "prompt"]
        every = self.config.methods
        return [
            Stage(
                "teach",
                lambda: {m.name: self.teach(m) for m in distilled},
                # with their fingerprints: a redo that fails puts back records and fingerprint together
                lambda: [f for m in distilled for f in record_files(self.teacher_records(m))],
                "teacher rationales, D per question",
                settings=("task", "data_dir", "train_limit", "teacher", "teach_mode", "methods"),
            ),
            Stage(
                "curate",
                lambda: {m.name: self.curate(m) for m in trained},
                lambda: [self.run_dir / "data" / m.name for m in trained],
                "student examples per method",
                settings=("curate",),
            ),
            Stage(
                "train",
                lambda: {m.name: self.train(m) for m in trained},
                lambda: [self.run_dir / "students" / m.name for m in trained],
                "one student per method",
                settings=("student",),
            ),
            Stage(
                "eval",
                lambda: {m.name: self.evaluate(m) for m in every},
                lambda: [self.run_dir / "eval" / m.name for m in every],
                "every method on the test split",
                settings=("eval",),
            ),
            Stage("report", self.report, lambda: [], "report.md / report.tex / plots", settings=("name",)),
        ]

    # -- stages ---------------------------------------------------------------------------------------
    def teacher_records(self, m: MethodSpec) -> Path:
        return self.run_dir / "teacher" / f"{self.task.name}.D{m.samples}.jsonl"

    def teach(self, m: MethodSpec) -> Path:
        run_teach(self.config.teach_config(m), progress=self.progress)
        return self.teacher_records(m)

    def curate(self, m: MethodSpec) -> Path:
        out = self.run_dir / "data" / m.name
        return unit(out / "train.jsonl", lambda: self._curate(m, out), read=lambda path: path)

    def _curate(self, m: MethodSpec, out: Path) -> Path:
        if m.kind == "vanilla":
            questions = self.task.load("train", self.config.data_dir, **self.task_params)
            curate_vanilla(questions[: self.config.train_limit or None], self.task.name, self.task.answer_type, out)
        else:
            settings = CurateSettings(filters=self.config.curate.filters, dedupe=self.config.curate.dedupe)
            stats = curate_file(self.teach(m), out, m.format, self.task.answer_type, settings)
            log.info("%s: kept %d of %d teacher samples", m.name, stats["kept"], stats["records"])
        return out / "train.jsonl"

    def train(self, m: MethodSpec) -> Path:
        from cotbridge.train.sft import train_student

        out = self.run_dir / "students" / m.name
        student = self.config.student.model_copy(update={"output_dir": str(out)})
        unit(out / "done.json", lambda: train_student(student, list(read_jsonl(self.curate(m)))))
        return out

    def evaluate(self, m: MethodSpec) -> dict[str, Any]:
        trained = m.kind != "prompt"
        student = self.config.student
        mode = "vanilla" if m.kind == "vanilla" else FORMATS.get(m.format).eval_mode if trained else m.mode
        return evaluate_model(
            self.run_dir,
            m.name,
            model=str(self.train(m)) if trained else student.model,
            gguf_file=None if trained else student.gguf_file,
            task=self.config.task,
            data_dir=self.config.data_dir,
            spec=self.config.eval,
            mode=mode,
            chat=m.chat or (trained and m.format == "chat"),
            progress=self.progress,
        )

    def report(self) -> dict[str, Path]:
        from cotbridge.reporting.report import write_report
        from cotbridge.reporting.rows import rows_from_results

        cfg = self.config
        rows = []
        for m in cfg.methods:
            extra = {"degree": m.samples} if m.kind == "distill" else {}
            rows += rows_from_results(self.evaluate(m), method=m.name, student=cfg.student.model, **extra)
        notes = (
            f"Task `{cfg.task}` ({cfg.eval.split} split), student `{cfg.student.model}` "
            f"({'LoRA' if cfg.student.lora else 'full'} fine-tuning, {cfg.student.epochs} epochs), "
            f"teacher `{cfg.teacher.backend}`."
        )
        return write_report(rows, self.run_dir, title=f"cotbridge run: {cfg.name}", notes=notes)

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        return {
            "results": {k: v["results"] for k, v in results["eval"].items()},
            "report": {k: str(p) for k, p in results["report"].items()},
        }


def run_pipeline(cfg: RunConfig, from_stage: str | None = None, progress: bool = True) -> dict[str, Any]:
    return run_recipe(FinetuneCoT(cfg, progress), from_stage)
