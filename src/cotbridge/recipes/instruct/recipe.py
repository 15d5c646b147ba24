"""Instruction-tuning-CoT (``cotbridge instruct CONFIG``): teach -> merge -> train (one student per row) -> eval matrix
-> report, as stages on the engine.

One run directory, every stage resumable: teacher records are appended and skipped when present (paid
calls come back from the request cache), merged data, students and evaluated cells are reused when
their files exist; ``--from STAGE`` removes that stage's outputs and the later ones'.

    runs/<name>/teacher/<task>.<teacher>.jsonl   teacher records (released outputs: released/ first)
    runs/<name>/data/<row>/train.jsonl           instruction examples with provenance; merge.json: statistics
    runs/<name>/students/<row>/                  merged student (+ adapter/); done.json
    runs/<name>/eval/<row>/                      one matrix row in cotbridge eval's layout: results.json (a cell's
                                                 metrics per task), <task>.jsonl (per-question outputs)
    runs/<name>/matrix.{json,md,png}             the transfer matrix, family table and heatmap
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.engine import RECIPES, Stage, run_recipe, unit
from cotbridge.errors import UserError
from cotbridge.jsonl import read_jsonl, write_json
from cotbridge.recipes.eval_stage import EvalSpec, evaluate_model
from cotbridge.recipes.instruct import multiteacher
from cotbridge.recipes.instruct.config import InstructConfig, RowSpec
from cotbridge.recipes.instruct.instruction_format import ensure_prompt_mode, load_template
from cotbridge.recipes.instruct.transfer import BASE, row_meta, select_test_sets, test_set_record
from cotbridge.tasks import get_task

TEACH_SETTINGS = ("data_dir", "tasks", "teachers", "rows", "teach_mode", "teach_max_tokens")


@RECIPES.register("instruct")
class InstructionTuningCoT:
    def __init__(self, config: InstructConfig, progress: bool = True):
        self.config = self.cfg = config
        self.progress = progress
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
                settings=TEACH_SETTINGS,
            ),
            Stage(
                "merge", self.merge_all, lambda: [d / "data"], "merge demonstrations per row", ("merge", "template")
            ),
            Stage("train", self.train_all, lambda: [d / "students"], "one student per row", settings=("student",)),
            Stage("eval", self.evaluate, lambda: [d / "eval"], "every student on every matrix task", ("eval",)),
            Stage(
                "report", self.report, self.report_files, "the transfer matrix, family table and heatmap", ("name",)
            ),
        ]

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        return {**results["report"], "teach": results["teach"]}

    def merge_all(self) -> dict[str, int]:
        return {r.label(): len(self.merge(r)) for r in self.rows}

    def train_all(self) -> dict[str, str]:
        return {r.label(): self.train(r) for r in self.rows}

    def report_files(self) -> list[Path]:
        return [self.dir / f"matrix.{ext}" for ext in ("json", "md", "png")]

    def merge(self, row: RowSpec) -> list[dict[str, Any]]:
        out = self.dir / "data" / row.label()
        return unit(
            out / "train.jsonl",
            lambda: multiteacher.merge_row(self.cfg, row, self.template, out),
            read=lambda path: list(read_jsonl(path)),
        )

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

    def evaluate(self) -> dict[str, Any]:
        """Every row's student on every matrix task, through the shared evaluation stage (``eval/<row>/``, cotbridge
        eval's layout); rows already evaluated are read back. The result is kept for the report stage."""
        if self._evaluated is None:
            ev, student = self.cfg.eval, self.cfg.student
            trained = [ex for row in self.rows for ex in self.merge(row)]
            test_sets = select_test_sets(self.cfg.matrix_tasks(), ev.split, ev.limit, self.cfg.data_dir, trained)
            record = test_set_record(test_sets, ev.split)
            write_json(self.dir / "eval" / "test_sets.json", record)
            # A trained row's model is its student folder (trained first if needed); base: the untuned student.
            models = {BASE: (student.model, student.gguf_file)} if ev.base else {}
            models.update({row.label(): (self.train(row), None) for row in self.rows})
            spec = EvalSpec(split=ev.split, batch_size=ev.batch_size, max_tokens=ev.max_tokens)
            ids = {column: ts["ids"] for column, ts in test_sets.items()}
            common = dict(task=self.cfg.matrix_tasks(), ids=ids, spec=spec, mode=self.mode, chat=True)
            cells = {
                name: evaluate_model(
                    self.dir, name, model=m, gguf_file=g, data_dir=self.cfg.data_dir, progress=self.progress, **common
                )["results"]
                for name, (m, g) in models.items()
            }
            self._evaluated = {"cells": cells, "test_sets": record}
        return self._evaluated

    def report(self) -> dict[str, Any]:
        from cotbridge.recipes.instruct.report import write_matrix_report

        evaluated = self.evaluate()
        rows = ([row_meta(self.cfg, None, self.dir)] if self.cfg.eval.base else []) + [
            row_meta(self.cfg, r, self.dir) for r in self.rows
        ]
        return write_matrix_report(self.cfg, rows, evaluated, self.template.name, self.mode)


def run_instruct(cfg: InstructConfig, from_stage: str | None = None, progress: bool = True) -> dict[str, Any]:
    return run_recipe(InstructionTuningCoT(cfg, progress), from_stage)
