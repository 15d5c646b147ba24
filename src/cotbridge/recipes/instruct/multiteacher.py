"""Several teachers, one task: teach (one record file per teacher), then filter, merge and deduplicate
their demonstrations with provenance on every example.

Teaching reuses :func:`cotbridge.teach.run_teach` (request cache, resume, cost caps); released outputs
are replayed. Merging reuses :func:`cotbridge.curate.curate` per teacher (so its statistics say what
each filter dropped), then removes rationales two teachers share, caps demonstrations per question and
per row, and takes teachers in turn so a merged row is balanced.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

from cotbridge.curate import CurateSettings, curate, rationale_fingerprint
from cotbridge.jsonl import read_jsonl, write_json, write_jsonl
from cotbridge.recipes.instruct.config import InstructConfig, MergeSpec, RowSpec, TeacherSpec
from cotbridge.recipes.instruct.instruction_format import InstructionTemplate, to_instruction_example
from cotbridge.recipes.instruct.released import convert_released
from cotbridge.tasks import get_task
from cotbridge.teach import TeachConfig, TeacherConfig, run_teach

log = logging.getLogger(__name__)


def record_path(run_dir: Path, task: str, teacher: str) -> Path:
    return run_dir / "teacher" / f"{task}.{teacher}.jsonl"


def teach_config(cfg: InstructConfig, teacher: TeacherSpec, task: str) -> TeachConfig:
    spec = teacher.task_spec(task)
    assert spec is not None
    run_dir = cfg.directory()
    options = {**teacher.options, **spec.options}
    model = teacher.model
    if spec.released is not None:
        out = run_dir / "released" / f"{task}.{teacher.name}.jsonl"
        options.update(convert_released(spec.released, task, out, cfg.data_dir))
        options.setdefault("teacher", teacher.model or teacher.name)
        model = options["path"]
    return TeachConfig(
        task=task,
        split=spec.split,
        data_dir=cfg.data_dir,
        limit=spec.limit,
        teacher=TeacherConfig(backend=teacher.backend, model=model, options=options),
        mode=cfg.teach_mode,
        max_tokens=spec.max_tokens or cfg.teach_max_tokens,
        chat=teacher.chat,
        pipeline=spec.pipeline or "default",
        run_dir=str(run_dir),
        tag=teacher.name,
    )


def teach_all(cfg: InstructConfig, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run every (teacher, task) that some row needs; finished records are skipped, paid calls cached."""
    needed = {(t, r.task) for r in cfg.resolved_rows() for t in r.teachers}
    summaries = {}
    for teacher in cfg.teachers:
        for task in cfg.tasks:
            if (teacher.name, task) in needed and teacher.task_spec(task) is not None:
                summaries[f"{task}.{teacher.name}"] = run_teach(teach_config(cfg, teacher, task), progress=progress)
    return summaries


def provenance(teacher: TeacherSpec, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "teacher": teacher.name,
        "family": teacher.family,
        "backend": teacher.backend,
        "model": (rec.get("teacher") or {}).get("model") or teacher.model,
        "split": rec.get("split"),
        "record": rec.get("key"),
        "sample": rec.get("sample"),
        "teacher_correct": rec.get("correct"),
    }


def merge_demonstrations(
    per_teacher: list[tuple[TeacherSpec, list[dict[str, Any]]]], spec: MergeSpec
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kept demonstrations with ``provenance``, statistics per teacher and overall).

    Teachers earlier in the list win ties: a rationale that two teachers wrote identically for the same
    question is kept once, credited to the first, with the others under ``provenance.also_from``.
    """
    settings = CurateSettings(filters=spec.filters, dedupe=False)
    stats: dict[str, Any] = {"teachers": {}}
    by_fp: dict[tuple[str, str, str], dict[str, Any]] = {}
    queues: list[list[dict[str, Any]]] = []
    for teacher, records in per_teacher:
        kept, cstats = curate(records, settings)
        duplicates = 0
        queue = []
        for rec in kept:
            demo = {**rec, "provenance": provenance(teacher, rec)}
            fp = (str(rec.get("task")), str(rec["example_id"]), rationale_fingerprint(rec.get("rationale", "")))
            if spec.dedupe and fp in by_fp:
                by_fp[fp]["provenance"].setdefault("also_from", []).append(teacher.name)
                duplicates += 1
                continue
            by_fp[fp] = demo
            queue.append(demo)
        random.Random(f"{spec.seed}:{teacher.name}").shuffle(queue)
        queues.append(queue)
        stats["teachers"][teacher.name] = {**cstats, "family": teacher.family, "duplicates": duplicates, "selected": 0}
    per_question: Counter[tuple[str, str]] = Counter()
    chosen: list[dict[str, Any]] = []
    cap = spec.max_demonstrations
    # Round-robin over teachers, so a capped merged row holds each teacher about equally.
    while any(queues) and (cap is None or len(chosen) < cap):
        for queue in queues:
            while queue:
                demo = queue.pop(0)
                q = (str(demo.get("task")), str(demo["example_id"]))
                if spec.max_per_question is None or per_question[q] < spec.max_per_question:
                    per_question[q] += 1
                    chosen.append(demo)
                    stats["teachers"][demo["provenance"]["teacher"]]["selected"] += 1
                    break
            if cap is not None and len(chosen) >= cap:
                break
    chosen.sort(
        key=lambda d: (str(d.get("task")), _id_order(d["example_id"]), d["provenance"]["teacher"], d.get("sample", 0))
    )
    stats.update(
        {
            "demonstrations": len(chosen),
            "questions": len(per_question),
            "max_demonstrations": cap,
            "max_per_question": spec.max_per_question,
            "dedupe": spec.dedupe,
            "filters": spec.filters,
        }
    )
    return chosen, stats


def _id_order(example_id: str) -> tuple[int, str]:
    digits = "".join(c for c in str(example_id) if c.isdigit())
    return (int(digits) if digits else -1, str(example_id))


def load_teacher_records(
    cfg: InstructConfig, task: str, teachers: list[str]
) -> list[tuple[TeacherSpec, list[dict[str, Any]]]]:
    run_dir = cfg.directory()
    return [(cfg.teacher(name), list(read_jsonl(record_path(run_dir, task, name)))) for name in teachers]


def merge_row(cfg: InstructConfig, row: RowSpec, template: InstructionTemplate, out: Path) -> list[dict[str, Any]]:
    """One row's training data: its teachers' demonstrations merged, in the instruction template, with the question
    kept for decontamination; ``out/train.jsonl`` and ``out/merge.json`` (statistics)."""
    per_teacher = load_teacher_records(cfg, row.task, row.teachers)
    demos, stats = merge_demonstrations(per_teacher, cfg.merge)
    answer_type = get_task(row.task.partition(":")[0]).answer_type
    examples = [{**to_instruction_example(d, template, answer_type), "question": d["question"]} for d in demos]
    write_json(out / "merge.json", {**stats, "row": row.label(), "task": row.task, "template": template.name})
    write_jsonl(out / "train.jsonl", examples)
    log.info("%s: %d demonstrations from %s", row.label(), len(examples), ", ".join(row.teachers))
    return examples
