"""Instruction-tuning-CoT (``cotbridge instruct CONFIG``): teach -> merge -> train (one student per row) -> eval matrix
-> report, as stages on the engine.

One run directory, every stage resumable: teacher records are appended and skipped when present (paid
calls come back from the request cache), merged data, students and evaluated cells are reused when
their files exist; ``--from STAGE`` removes that stage's outputs and the later ones'.

    runs/<name>/teacher/<task>.<teacher>.jsonl   teacher records (released outputs: released/ first)
    runs/<name>/data/<row>/train.jsonl           instruction examples with provenance; merge.json: statistics
    runs/<name>/students/<row>/                  merged student (+ adapter/); done.json
    runs/<name>/eval/<row>/<task>.{json,jsonl}   one matrix cell: metrics and per-question outputs
    runs/<name>/matrix.{json,md,png}             the transfer matrix, family table and heatmap
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.errors import UserError
from cotbridge.fileio import write_text
from cotbridge.jsonl import read_json, read_jsonl, write_json, write_jsonl
from cotbridge.recipes.instruct import multiteacher
from cotbridge.recipes.instruct.config import InstructConfig, RowSpec
from cotbridge.recipes.instruct.instruction_format import ensure_prompt_mode, load_template, to_instruction_example
from cotbridge.recipes.instruct.report import family_markdown, matrix_markdown, plot_heatmap, rate_markdown
from cotbridge.recipes.instruct.transfer import (
    BASE,
    build_matrix,
    evaluate_row,
    family_comparison,
    relation_to_student,
    select_test_sets,
)
from cotbridge.tasks import get_task

log = logging.getLogger(__name__)


@RECIPES.register("instruct")
class InstructionTuningCoT:
    def __init__(self, config: InstructConfig, progress: bool = True):
        self.config, self.progress = config, progress
        self.cfg = config  # the stage methods below read it as cfg
        self.run_dir = self.dir = config.directory()
        self.rows = config.resolved_rows()
        self._evaluated: dict[str, Any] | None = None
        self.template = load_template(config.template)
        self.mode = ensure_prompt_mode(self.template)
        for task in (*config.tasks, *config.matrix_tasks()):
            get_task(task.partition(":")[0])  # unknown task names fail before any work

    def stages(self) -> list[Stage]:
        d = self.dir
        return [
            Stage(
                "teach",
                lambda: multiteacher.teach_all(self.cfg, progress=self.progress),
                lambda: [d / "teacher", d / "released"],
                "every (teacher, task) some row needs",
                settings=("data_dir", "tasks", "teachers", "rows", "teach_mode", "teach_max_tokens"),
            ),
            Stage(
                "merge",
                lambda: {r.label(): len(self.merge(r)) for r in self.rows},
                lambda: [d / "data"],
                "filter, merge and deduplicate demonstrations per row",
                settings=("merge", "template"),
            ),
            Stage(
                "train",
                lambda: {r.label(): self.train(r) for r in self.rows},
                lambda: [d / "students"],
                "one student per row",
                settings=("student",),
            ),
            Stage(
                "eval", self.evaluate, lambda: [d / "eval"], "every student on every matrix task", settings=("eval",)
            ),
            Stage(
                "report",
                lambda: self.report(self.evaluate()),
                lambda: [d / "matrix.json", d / "matrix.md", d / "matrix.png"],
                "the transfer matrix, family table and heatmap",
                settings=("name",),
            ),
        ]

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        return {**results["report"], "teach": results["teach"]}

    # -- stages -------------------------------------------------------------------------------------------
    def merge(self, row: RowSpec) -> list[dict[str, Any]]:
        out = self.dir / "data" / row.label()
        return unit(out / "train.jsonl", lambda: self._merge(row, out), read=lambda path: list(read_jsonl(path)))

    def _merge(self, row: RowSpec, out: Path) -> list[dict[str, Any]]:
        per_teacher = multiteacher.load_teacher_records(self.cfg, row.task, row.teachers)
        demos, stats = multiteacher.merge_demonstrations(per_teacher, self.cfg.merge)
        answer_type = get_task(row.task.partition(":")[0]).answer_type
        examples = [
            {**to_instruction_example(d, self.template, answer_type), "question": d["question"]} for d in demos
        ]
        write_json(out / "merge.json", {**stats, "row": row.label(), "task": row.task, "template": self.template.name})
        write_jsonl(out / "train.jsonl", examples)
        log.info("%s: %d demonstrations from %s", row.label(), len(examples), ", ".join(row.teachers))
        return examples

    def train(self, row: RowSpec) -> str:
        from cotbridge.recipes.instruct.student import train_row

        out = self.dir / "students" / row.label()

        def make() -> dict[str, Any]:
            examples = self.merge(row)
            if not examples:
                raise UserError(
                    f"row {row.label()!r}: no demonstrations survived merging "
                    f"(see {self.dir}/data/{row.label()}/merge.json)"
                )
            return train_row(self.cfg.student, examples, out)

        unit(out / "done.json", make)
        return str(out)

    def row_meta(self, row: RowSpec | None) -> dict[str, Any]:
        if row is None:
            return {
                "name": BASE,
                "tuned_on": None,
                "teachers": [],
                "families": [],
                "relation": None,
                "demonstrations": 0,
            }
        families = [self.cfg.teacher(t).family for t in row.teachers]
        merged = self.dir / "data" / row.label() / "merge.json"
        return {
            "name": row.label(),
            "tuned_on": get_task(row.task.partition(":")[0]).name,
            "teachers": row.teachers,
            "families": families,
            "relation": relation_to_student(families, self.cfg.student.family),
            "demonstrations": read_json(merged)["demonstrations"] if merged.exists() else None,
        }

    def evaluate(self) -> dict[str, Any]:
        """Cells already on disk are reused; the result is kept for the report stage."""
        from cotbridge.backends.hf import HFBackend

        if self._evaluated is not None:
            return self._evaluated
        ev = self.cfg.eval
        trained = [ex for row in self.rows for ex in self.merge(row)]
        test_sets = select_test_sets(self.cfg.matrix_tasks(), ev.split, ev.limit, self.cfg.data_dir, trained)
        write_json(
            self.dir / "eval" / "test_sets.json",
            {
                name: {
                    "split": ev.split,
                    "split_size": ts["split_size"],
                    "excluded_trained": ts["excluded_trained"],
                    "n": len(ts["ids"]),
                    "ids": ts["ids"],
                }
                for name, ts in test_sets.items()
            },
        )
        cells: dict[str, dict[str, Any]] = {}
        plan: list[tuple[str, Any]] = (
            [
                (
                    BASE,
                    lambda: HFBackend(
                        self.cfg.student.model, gguf_file=self.cfg.student.gguf_file, batch_size=ev.batch_size
                    ),
                )
            ]
            if ev.base
            else []
        )
        for row in self.rows:
            plan.append((row.label(), lambda row=row: HFBackend(self.train(row), batch_size=ev.batch_size)))
        for name, loader in plan:  # a loader trains its student first if needed, and runs only for missing cells
            cells[name] = evaluate_row(
                loader, name, test_sets, self.mode, self.dir / "eval", ev.max_tokens, self.progress
            )
        self._evaluated = {
            "cells": cells,
            "test_sets": {
                k: {kk: v for kk, v in ts.items() if kk not in ("task", "examples")} for k, ts in test_sets.items()
            },
        }
        return self._evaluated

    def report(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        rows = ([self.row_meta(None)] if self.cfg.eval.base else []) + [self.row_meta(r) for r in self.rows]
        columns = [get_task(t.partition(":")[0]).name for t in self.cfg.matrix_tasks()]
        matrix = build_matrix(rows, columns, evaluated["cells"])
        families = family_comparison(matrix)
        summary = {
            "name": self.cfg.name,
            "student": self.cfg.student.model,
            "student_family": self.cfg.student.family,
            "template": self.template.name,
            "prompt_mode": self.mode,
            "matrix": matrix,
            "families": families,
            "teachers": [t.model_dump(include={"name", "family", "backend", "model"}) for t in self.cfg.teachers],
            "test_sets": {
                k: {kk: v for kk, v in ts.items() if kk != "ids"} for k, ts in evaluated["test_sets"].items()
            },
        }
        write_json(self.dir / "matrix.json", summary)
        png = plot_heatmap(matrix, self.dir / "matrix.png", title=f"{self.cfg.name}: student {self.cfg.student.model}")
        md = [
            f"# Instruction-tuning-CoT transfer matrix: {self.cfg.name}",
            "",
            "Rows: what the student was tuned on (← teacher, family); columns: what it is tested on. "
            "Accuracy % ± standard error (n test questions); in-domain cells in bold.",
            "",
            matrix_markdown(matrix),
            f"Outputs that finished within {self.cfg.eval.max_tokens} new tokens (%):",
            "",
            rate_markdown(matrix, "complete"),
            "Outputs whose answer followed a marker such as 'The answer is' (%):",
            "",
            rate_markdown(matrix, "correct_format"),
            "## Teacher families",
            "",
            family_markdown(families, self.cfg.student.model, self.cfg.student.family),
            "",
            f"![heatmap]({png.name})",
            "",
        ]
        write_text(self.dir / "matrix.md", "\n".join(md))
        return summary


def run_instruct(cfg: InstructConfig, from_stage: str | None = None, progress: bool = True) -> dict[str, Any]:
    return run_recipe(InstructionTuningCoT(cfg, progress), from_stage)
