"""On-policy distillation (``cotbridge onpolicy CONFIG``): preflight -> init -> teach -> curate -> warmup -> distill
-> eval -> report, stages on the engine.

The pre-flight check comes first, so a teacher that cannot grade the student token by token is refused before any
training, the warm-up included (the warm-up keeps the starting student's tokenizer, so checking that one is enough).
The optional warm-up is Fine-tune-CoT's teach -> curate -> train, through the same generic stages; distillation then
starts from the warmed-up student (TRL's GKDTrainer, :mod:`cotbridge.train.on_policy`). Both students are evaluated in
the format's prompt mode and reported side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.curate import CurateSettings, curate_file
from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.jsonl import read_jsonl
from cotbridge.prompts.formats import FORMATS
from cotbridge.recipes.eval_stage import evaluate_model
from cotbridge.recipes.on_policy.config import OnPolicyRunConfig
from cotbridge.tasks import parse_task_spec
from cotbridge.teach import TeachConfig, run_teach

WARMUP, DISTILLED = "sft_warmup", "on_policy"  # the students, and the report's rows


def uses_chat(fmt: str) -> bool:
    """Whether the student format's prompts are chat messages (rendered through the chat template)."""
    return isinstance(FORMATS.get(fmt).build({"question": "", "rationale": "", "label": ""})["prompt"], list)


def pair_checks(cfg: OnPolicyRunConfig) -> list[dict[str, str]]:
    """The pre-flight checks on the starting student and the teacher (``cotbridge preflight`` and the first stage).
    A truncated student shares its source's tokenizer and output layer, so the source stands in for it."""
    from cotbridge.train.on_policy import check_pair

    t = cfg.truncate
    model, gguf = (t.model, t.gguf_file) if t else (cfg.student.model, cfg.student.gguf_file)
    pair = cfg.distill.model_copy(update={"model": model, "gguf_file": gguf})
    return check_pair(pair, chat=uses_chat(cfg.format), top_k=cfg.top_k)


@RECIPES.register("on_policy")
class OnPolicy:
    def __init__(self, config: OnPolicyRunConfig, progress: bool = True):
        FORMATS.get(config.format)
        self.config, self.progress = config, progress
        self.run_dir = config.directory()
        self.task, self.task_params = parse_task_spec(config.task)

    def methods(self) -> list[str]:
        return [WARMUP, DISTILLED] if self.config.warmup else [DISTILLED]

    def stages(self) -> list[Stage]:
        d = self.run_dir
        pair = ("student.model", "student.gguf_file", "truncate", "format", "top_k")
        teacher = ("distill.teacher", "distill.teacher_gguf_file", "distill.teacher_dtype")
        return [
            Stage(
                "preflight",
                self.preflight,
                lambda: [d / "preflight.json"],
                "can the teacher grade the student?",
                settings=pair + teacher,
            ),
            Stage("init", self.init, lambda: [d / "init"], "the starting student", settings=("truncate",)),
            Stage(
                "teach",
                self.teach,
                lambda: [d / "teacher"],
                "teacher rationales",
                settings=("task", "data_dir", "train_limit", "rationales"),
            ),
            Stage("curate", self.curate, lambda: [d / "data"], "warm-up data", settings=("format",)),
            Stage(
                "warmup",
                self.warmup,
                lambda: [d / "students" / WARMUP],
                "Fine-tune-CoT SFT",
                settings=("student", "warmup"),
            ),
            Stage(
                "distill",
                self.distill,
                lambda: [d / "students" / DISTILLED],
                "on-policy distillation",
                settings=("distill",),
            ),
            Stage(
                "eval",
                lambda: {m: self.evaluate(m) for m in self.methods()},
                lambda: [d / "eval"],
                "every student on the test split",
                settings=("eval",),
            ),
            Stage("report", self.report, lambda: [], "report.md / report.tex / plots", settings=("name",)),
        ]

    # -- stages ---------------------------------------------------------------------------------------
    def preflight(self) -> dict[str, Any]:
        return unit(self.run_dir / "preflight.json", lambda: {"checks": pair_checks(self.config)})

    def init(self) -> tuple[str, str | None]:
        """The starting student: (model, gguf_file)."""
        t, out = self.config.truncate, self.run_dir / "init"
        if t is None:
            return self.config.student.model, self.config.student.gguf_file

        def make() -> dict[str, Any]:
            from cotbridge.models.truncated import truncated_copy

            return {**t.model_dump(), "folder": str(truncated_copy(t.model, out, t.layers, t.gguf_file))}

        unit(out / "truncated.json", make)
        return str(out), None

    def teach(self) -> Path | None:
        r = self.config.rationales
        if r is None:
            return None
        cfg = TeachConfig(
            task=self.config.task,
            split="train",
            data_dir=self.config.data_dir,
            limit=self.config.train_limit,
            teacher=r.teacher,
            mode=r.mode,
            samples=r.samples,
            temperature=r.temperature,
            run_dir=str(self.run_dir),
        )
        run_teach(cfg, progress=self.progress)
        return self.run_dir / "teacher" / f"{self.task.name}.jsonl"

    def curate(self) -> Path | None:
        r, out = self.config.rationales, self.run_dir / "data"
        if r is None:
            return None
        settings = CurateSettings(filters=r.filters, dedupe=r.dedupe)
        make = lambda: curate_file(self.teach(), out, self.config.format, self.task.answer_type, settings)  # noqa: E731
        return unit(out / "train.jsonl", make, read=lambda path: path)

    def warmup(self) -> tuple[str, str | None]:
        """The student distillation starts from: (model, gguf_file)."""
        if not self.config.warmup:
            return self.init()
        from cotbridge.train.sft import train_student

        out = self.run_dir / "students" / WARMUP
        model, gguf = self.init()
        cfg = self.config.student.model_copy(update={"model": model, "gguf_file": gguf, "output_dir": str(out)})
        unit(out / "done.json", lambda: train_student(cfg, list(read_jsonl(self.curate()))))
        return str(out), None

    def prompts(self) -> list[dict[str, Any]]:
        """Distillation data: the curated rationales (their completions serve steps off the student's samples), or,
        without rationales, the training questions as prompts alone."""
        curated = self.curate()
        if curated is not None:
            return list(read_jsonl(curated))
        build = FORMATS.get(self.config.format).build
        questions = self.task.load("train", self.config.data_dir, **self.task_params)
        questions = questions[: self.config.train_limit or None]
        return [{"prompt": build({"question": q.question, "rationale": "", "label": ""})["prompt"]} for q in questions]

    def distill(self) -> dict[str, Any]:
        from cotbridge.train.on_policy import train_on_policy

        out = self.run_dir / "students" / DISTILLED
        model, gguf = self.warmup()
        cfg = self.config.distill.model_copy(update={"model": model, "gguf_file": gguf, "output_dir": str(out)})
        return unit(out / "done.json", lambda: train_on_policy(cfg, self.prompts()))

    def evaluate(self, method: str) -> dict[str, Any]:
        c = self.config
        return evaluate_model(
            self.run_dir,
            method,
            model=str(self.run_dir / "students" / method),
            task=c.task,
            data_dir=c.data_dir,
            spec=c.eval,
            mode=FORMATS.get(c.format).eval_mode,
            chat=uses_chat(c.format),
            progress=self.progress,
        )

    def report(self) -> dict[str, Path]:
        from cotbridge.reporting.report import write_report
        from cotbridge.reporting.rows import rows_from_results

        c = self.config
        start = (
            f"the first {c.truncate.layers} layers of `{c.truncate.model}`" if c.truncate else f"`{c.student.model}`"
        )
        rows = [r for m in self.methods() for r in rows_from_results(self.evaluate(m), method=m, student=start)]
        d = c.distill
        notes = (
            f"Task `{c.task}` ({c.eval.split} split). Student: {start}"
            f"{', Fine-tune-CoT warm-up on curated teacher rationales' if c.warmup else ''}; then on-policy "
            f"distillation toward `{d.teacher}` (lmbda {d.lmbda}, beta {d.beta}, seq_kd {d.seq_kd}, "
            f"{'LoRA' if d.lora else 'full'}, {d.max_steps if d.max_steps > 0 else d.epochs} "
            f"{'steps' if d.max_steps > 0 else 'epochs'})."
        )
        return write_report(rows, self.run_dir, title=f"cotbridge onpolicy: {c.name}", notes=notes)

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        return {
            "preflight": results["preflight"]["checks"],
            "distill": {k: v for k, v in results["distill"].items() if k != "losses"},
            "results": {k: v["results"] for k, v in results["eval"].items()},
            "report": {k: str(p) for k, p in results["report"].items()},
        }


def run_on_policy(cfg: OnPolicyRunConfig, from_stage: str | None = None, progress: bool = True) -> dict[str, Any]:
    return run_recipe(OnPolicy(cfg, progress), from_stage)
