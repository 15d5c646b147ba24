"""``cotbridge run CONFIG``: teach -> curate -> train -> eval -> report, as resumable stages in one run dir.

Each method in the config is a row of the final report: a prompted baseline (no training), vanilla
fine-tuning (answers only), or distillation (teacher rationales in a student format, D per question).
Stages skip work already done; ``--from STAGE`` redoes that stage and the ones after it (teacher
calls stay in the request cache, so redoing ``teach`` pays nothing again).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Literal

from cotbridge.config import StrictModel, dump_config
from cotbridge.curate import CurateSettings, curate_file
from cotbridge.errors import UserError
from cotbridge.formats import FORMATS, vanilla_examples
from cotbridge.jsonl import read_json, read_jsonl, write_json, write_jsonl
from cotbridge.tasks import parse_task_spec
from cotbridge.teach import TeachConfig, TeacherConfig, run_teach
from cotbridge.train.sft import TrainConfig

log = logging.getLogger(__name__)
STAGES = ("teach", "curate", "train", "eval", "report")


class MethodSpec(StrictModel):
    name: str
    kind: Literal["prompt", "vanilla", "distill"]
    mode: str = "zero_shot_cot"  # prompt baselines: the prompt mode
    chat: bool = False  # prompt baselines: wrap in the model's chat template
    format: str = "finetune_cot"  # distill: the student format
    samples: int = 1  # distill: rationales per question (D)
    temperature: float | None = None  # distill: None -> 0 for D=1, 0.7 for D>1


class CurateSpec(StrictModel):
    filters: list[str] = ["has_output", "correct"]
    dedupe: bool = False


class EvalSpec(StrictModel):
    split: str = "test"
    limit: int | None = None
    batch_size: int = 16
    max_tokens: int | None = None


class RunConfig(StrictModel):
    name: str = "run"
    run_dir: str | None = None  # default runs/<name>
    task: str = "synthetic_coin_flip"
    data_dir: str | None = None
    train_limit: int | None = None  # training questions taught / trained on
    teacher: TeacherConfig = TeacherConfig()
    teach_mode: str = "zero_shot_cot"
    curate: CurateSpec = CurateSpec()
    student: TrainConfig = TrainConfig()
    eval: EvalSpec = EvalSpec()
    methods: list[MethodSpec] = [MethodSpec(name="finetune_cot", kind="distill")]

    def directory(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)


class Pipeline:
    def __init__(self, cfg: RunConfig, progress: bool = True):
        names = [m.name for m in cfg.methods]
        if len(set(names)) != len(names):
            raise UserError(f"method names must be unique, got {names}")
        for m in cfg.methods:
            if m.kind == "distill":
                FORMATS.get(m.format)
        self.cfg, self.progress = cfg, progress
        self.dir = cfg.directory()
        self.task, self.task_params = parse_task_spec(cfg.task)

    # -- bookkeeping ------------------------------------------------------------------------------------
    def stage_paths(self, stage: str, m: MethodSpec) -> list[Path]:
        return {"teach": [self.dir / "teacher" / f"{self.task.name}.D{m.samples}.jsonl"] if m.kind == "distill" else [],
                "curate": [self.dir / "data" / m.name],
                "train": [self.dir / "students" / m.name],
                "eval": [self.dir / "eval" / m.name],
                "report": []}[stage]

    def reset_from(self, stage: str) -> None:
        if stage not in STAGES:
            raise UserError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        for later in STAGES[STAGES.index(stage):]:
            for m in self.cfg.methods:
                for path in self.stage_paths(later, m):
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
                    log.info("--from %s: removed %s", stage, path)

    # -- stages ---------------------------------------------------------------------------------------
    def teach(self, m: MethodSpec) -> Path:
        cfg = TeachConfig(task=self.cfg.task, split="train", data_dir=self.cfg.data_dir, limit=self.cfg.train_limit,
                          teacher=self.cfg.teacher, mode=self.cfg.teach_mode, samples=m.samples, temperature=m.temperature,
                          run_dir=str(self.dir), tag=f"D{m.samples}")
        run_teach(cfg, progress=self.progress)
        return self.stage_paths("teach", m)[0]

    def curate(self, m: MethodSpec) -> Path:
        out = self.stage_paths("curate", m)[0]
        if (out / "train.jsonl").exists():
            return out / "train.jsonl"
        if m.kind == "vanilla":
            questions = self.task.load("train", self.cfg.data_dir, **self.task_params)[: self.cfg.train_limit or None]
            rows = [{"question": q.question, "gold": q.answer, "task": self.task.name, "example_id": q.id, "sample": 0}
                    for q in questions]
            write_jsonl(out / "train.jsonl", vanilla_examples(rows, self.task.answer_type))
            write_json(out / "curation.json", {"examples": len(rows), "format": "vanilla"})
        else:
            stats = curate_file(self.teach(m), out, m.format, self.task.answer_type,
                                CurateSettings(filters=self.cfg.curate.filters, dedupe=self.cfg.curate.dedupe))
            log.info("%s: kept %d of %d teacher samples", m.name, stats["kept"], stats["records"])
        return out / "train.jsonl"

    def train(self, m: MethodSpec) -> Path:
        from cotbridge.train.sft import train_student

        out = self.stage_paths("train", m)[0]
        if (out / "done.json").exists():
            return out
        examples = list(read_jsonl(self.curate(m)))
        cfg = self.cfg.student.model_copy(update={"output_dir": str(out)})
        stats = train_student(cfg, examples)
        write_json(out / "done.json", stats)
        return out

    def evaluate(self, m: MethodSpec) -> dict[str, Any]:
        from cotbridge.harness import EvalConfig, run_eval

        out = self.stage_paths("eval", m)[0]
        if (out / "results.json").exists():
            return read_json(out / "results.json")
        trained = m.kind != "prompt"
        model = str(self.train(m)) if trained else self.cfg.student.model
        mode = "vanilla" if m.kind == "vanilla" else FORMATS.get(m.format).eval_mode if trained else m.mode
        cfg = EvalConfig(model=model, gguf_file=None if trained else self.cfg.student.gguf_file, tasks=[self.cfg.task],
                         split=self.cfg.eval.split, data_dir=self.cfg.data_dir, limit=self.cfg.eval.limit, mode=mode,
                         chat=m.chat or (trained and m.format == "chat"), batch_size=self.cfg.eval.batch_size,
                         max_tokens=self.cfg.eval.max_tokens, output=str(out))
        return run_eval(cfg, progress=self.progress)

    def report(self, results: dict[str, dict[str, Any]]) -> dict[str, Path]:
        from cotbridge.report import rows_from_results, write_report

        rows = []
        for m in self.cfg.methods:
            extra = {"degree": m.samples} if m.kind == "distill" else {}
            rows += rows_from_results(results[m.name], method=m.name, student=self.cfg.student.model, **extra)
        notes = (f"Task `{self.cfg.task}` ({self.cfg.eval.split} split), student `{self.cfg.student.model}` "
                 f"({'LoRA' if self.cfg.student.lora else 'full'} fine-tuning, {self.cfg.student.epochs} epochs), "
                 f"teacher `{self.cfg.teacher.backend}`.")
        return write_report(rows, self.dir, title=f"cotbridge run: {self.cfg.name}", notes=notes)

    def run(self, from_stage: str | None = None) -> dict[str, Any]:
        if from_stage:
            self.reset_from(from_stage)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(dump_config(self.cfg), encoding="utf-8")
        results = {}
        for m in self.cfg.methods:
            log.info("method %s (%s)", m.name, m.kind)
            results[m.name] = self.evaluate(m)  # pulls teach -> curate -> train as needed
        paths = self.report(results)
        return {"results": {k: v["results"] for k, v in results.items()}, "report": {k: str(p) for k, p in paths.items()}}


def run_pipeline(cfg: RunConfig, from_stage: str | None = None, progress: bool = True) -> dict[str, Any]:
    return Pipeline(cfg, progress).run(from_stage)
