"""``cotbridge teach``: a teacher answers a task split, one record per (question, sample); reruns resume.

Each option stands for a TeachConfig key (OPTIONS); its help is that key's comment, rendered from the config class.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cotbridge.cli.help_format import config_flags
from cotbridge.cli.options import ConfigOpt, set_option

SETTINGS = "cotbridge.teach.config:TeachConfig"  # the keys listed under --help
SetOpt = set_option("teacher.options.error_rate=0.2")
OPTIONS = {
    "task": "task",
    "teacher": "teacher.backend",
    "teacher_model": "teacher.model",
    "samples": "samples",
    "temperature": "temperature",
    "mode": "mode",
    "split": "split",
    "limit": "limit",
    "run_dir": "run_dir",
    "max_cost": "max_cost",
    "dry_run": "dry_run",
    "batch_export": "batch_export",
    "batch_import": "batch_import",
    "data_dir": "data_dir",
    "force_new": "force_new",
}
CHOICES = {"teacher.backend": "cotbridge.backends:BACKENDS", "mode": "cotbridge.teach.config:TEACH_MODES"}
Str, Int, Float, Flag = Optional[str], Optional[int], Optional[float], Optional[bool]


def teach_cmd(
    task: Annotated[Str, typer.Option("--task", "-t", metavar="TASK")] = None,
    teacher: Annotated[Str, typer.Option(metavar="BACKEND")] = None,
    teacher_model: Annotated[Str, typer.Option(metavar="MODEL")] = None,
    samples: Annotated[Int, typer.Option("--samples", "-D", metavar="N")] = None,
    temperature: Annotated[Float, typer.Option(metavar="FLOAT")] = None,
    mode: Annotated[Str, typer.Option(metavar="MODE")] = None,
    split: Annotated[Str, typer.Option(metavar="SPLIT")] = None,
    limit: Annotated[Int, typer.Option(metavar="N")] = None,
    run_dir: Annotated[Str, typer.Option(metavar="DIR")] = None,
    max_cost: Annotated[Float, typer.Option(metavar="USD")] = None,
    dry_run: Annotated[Flag, typer.Option("--dry-run")] = None,
    batch_export: Annotated[Str, typer.Option(metavar="FILE")] = None,
    batch_import: Annotated[Str, typer.Option(metavar="FILE")] = None,
    data_dir: Annotated[Str, typer.Option(metavar="DIR")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force_new: Annotated[Flag, typer.Option("--force-new")] = None,
) -> None:
    """Run a teacher over a task split: one record per (question, sample); rerun to resume."""
    from cotbridge.config import load_config
    from cotbridge.teach import TeachConfig, run_teach

    cfg = load_config(TeachConfig, config, set_, config_flags(locals(), OPTIONS))
    typer.echo(describe(run_teach(cfg)))


def describe(summary: dict[str, Any]) -> str:
    """What a teach run did, in the lines the command prints."""
    if "batch_exported" in summary:
        return (
            f"wrote {summary['batch_exported']} Batch API requests to {summary['path']}; upload it, then rerun "
            "with --batch-import RESULTS.jsonl"
        )
    if "dry_run" in summary:
        est = summary["dry_run"]
        cost = (
            "unknown (no price for this model)"
            if est["cost_usd_max"] is None
            else f"at most ${est['cost_usd_max']:.4f}"
        )
        return (
            f"dry run: {est['samples']} samples for {est['questions']} questions left; "
            f"~{est['prompt_tokens']} prompt tokens, at most {est['completion_tokens_max']} completion tokens; "
            f"cost {cost}"
        )
    lines = [
        f"{summary['task']}: {summary['records']}/{summary['expected_records']} records, teacher accuracy "
        f"{summary['accuracy']:.3f}, {summary['questions_with_a_correct_sample']}/{summary['questions']} "
        f"questions with a correct sample, cost ${summary['cost_usd']:.4f}"
    ]
    if summary.get("skipped"):
        sk = summary["skipped"]
        lines.append(
            f"skipped {sk['count']} records of {sk['questions']} questions, not generated ({sk['reason']}): "
            "counted wrong, never curated"
        )
    if summary["stopped"]:
        lines.append(f"stopped early: {summary['stopped']}")
    return "\n".join([*lines, f"wrote {summary['records_file']}"])
