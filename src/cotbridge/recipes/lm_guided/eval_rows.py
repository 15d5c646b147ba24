"""LM-guided CoT's ``eval`` stage: the paper's rows (standard, CoT, KD, KD+SC, KD+RL, KD+RL+SC) on the test split,
one unit per (row, task): ``eval/<row>/<task>.jsonl`` (per-question records) and ``<task>.metrics.json``, its
completion marker. The large model is started (and served, when configured) only if some cell is missing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cotbridge.engine import unit
from cotbridge.inference.two_stage import sampling_temperature
from cotbridge.jsonl import read_json, write_json, write_jsonl
from cotbridge.recipes.lm_guided.config import EvalRow, LMGuidedConfig
from cotbridge.recipes.lm_guided.inference import RowSpec, run_row
from cotbridge.recipes.lm_guided.resources import LargeModel, TaskData
from cotbridge.tasks import Task

log = logging.getLogger(__name__)


def evaluate_rows(
    cfg: LMGuidedConfig,
    data: TaskData,
    large: LargeModel,
    writer: Callable[[str], Any],
    run_dir: Path,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """{row: {task: metrics}}; ``writer("kd" | "rl")`` loads (training it first if needed) a small writer."""
    results: dict[str, dict[str, Any]] = {}
    writers: dict[str, Any] = {}
    with ExitStack() as stack:
        backend: list[Any] = []  # the large model, started by the first missing cell

        def make(row: EvalRow, task: Task, out: Path) -> dict[str, Any]:
            if not backend:
                backend.append(large.for_eval(stack))
            if row.rationale in ("kd", "rl") and row.rationale not in writers:
                writers[row.rationale] = writer(row.rationale)
            source = "none" if row.rationale == "none" else "large" if row.rationale == "large" else "small"
            spec = RowSpec(row.name, source, k=row.k, temperature=sampling_temperature(row.temperature, row.k))
            exs = data.examples(task, cfg.eval.split, cfg.eval.limit)
            log.info("eval %s on %s (%d questions, k=%d)", row.name, task.name, len(exs), row.k)
            records, metrics = run_row(
                task,
                exs,
                spec,
                backend[0],
                data.prompts(task),
                writers.get(row.rationale),
                cfg.writer.max_tokens,
                cfg.seed,
                progress,
            )
            write_jsonl(out / f"{task.name}.jsonl", records)
            write_json(out / f"{task.name}.metrics.json", metrics)
            return read_json(out / f"{task.name}.metrics.json")

        for row in cfg.eval.rows:
            out = run_dir / "eval" / row.name
            for task in data.tasks:
                cell = unit(out / f"{task.name}.metrics.json", lambda r=row, t=task, o=out: make(r, t, o))
                results.setdefault(row.name, {})[task.name] = cell
    return results
