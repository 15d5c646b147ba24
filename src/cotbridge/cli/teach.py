"""``cotbridge teach``: a teacher answers a task split, one record per (question, sample); reruns resume."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.options import ConfigOpt, DataDirOpt, ForceNewOpt, set_option

SETTINGS = "cotbridge.teach:TeachConfig"  # the keys listed under --help
SetOpt = set_option("teacher.options.error_rate=0.2")


def teach_cmd(
    task: Annotated[
        Optional[str], typer.Option("--task", "-t", metavar="TASK", help="task name (or name:key=value)")
    ] = None,
    teacher: Annotated[
        Optional[str], typer.Option(metavar="BACKEND", help="teacher backend: reference, replay, openai, hf, vllm")
    ] = None,
    teacher_model: Annotated[
        Optional[str], typer.Option(metavar="MODEL", help="teacher model id / path (replay: the JSONL file)")
    ] = None,
    samples: Annotated[
        Optional[int], typer.Option("--samples", "-D", metavar="N", help="rationales per question (diverse reasoning)")
    ] = None,
    temperature: Annotated[
        Optional[float], typer.Option(metavar="FLOAT", help="sampling temperature (default 0, or 0.7 when D>1)")
    ] = None,
    mode: Annotated[
        Optional[str],
        typer.Option(metavar="MODE", help="zero_shot_cot (two-stage), zero_shot_cot_single, few_shot_cot"),
    ] = None,
    split: Annotated[Optional[str], typer.Option(metavar="SPLIT", help="train (default) or test")] = None,
    limit: Annotated[Optional[int], typer.Option(metavar="N", help="first N questions")] = None,
    run_dir: Annotated[
        Optional[str], typer.Option(metavar="DIR", help="run directory (records go to DIR/teacher/TASK.jsonl)")
    ] = None,
    max_cost: Annotated[
        Optional[float], typer.Option(metavar="USD", help="stop cleanly before spending more than this many USD")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="estimate tokens and cost of what is left; call nothing")
    ] = False,
    batch_export: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="write missing calls as OpenAI Batch API input JSONL")
    ] = None,
    batch_import: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="load Batch API output into the cache, then finish the run")
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force_new: ForceNewOpt = False,
) -> None:
    """Run a teacher over a task split: one record per (question, sample); rerun to resume."""
    from cotbridge.config import load_config
    from cotbridge.teach import TeachConfig, run_teach

    flags = {
        "task": task,
        "teacher.backend": teacher,
        "teacher.model": teacher_model,
        "samples": samples,
        "temperature": temperature,
        "mode": mode,
        "split": split,
        "limit": limit,
        "run_dir": run_dir,
        "max_cost": max_cost,
        "dry_run": dry_run or None,
        "data_dir": data_dir,
        "batch_export": batch_export,
        "batch_import": batch_import,
        "force_new": force_new or None,
    }
    cfg = load_config(TeachConfig, config, set_, flags)
    summary = run_teach(cfg)
    if "batch_exported" in summary:
        typer.echo(
            f"wrote {summary['batch_exported']} Batch API requests to {summary['path']}; upload it, then rerun "
            "with --batch-import RESULTS.jsonl"
        )
        return
    if "dry_run" in summary:
        est = summary["dry_run"]
        cost = (
            "unknown (no price for this model)"
            if est["cost_usd_max"] is None
            else f"at most ${est['cost_usd_max']:.4f}"
        )
        typer.echo(
            f"dry run: {est['samples']} samples for {est['questions']} questions left; "
            f"~{est['prompt_tokens']} prompt tokens, at most {est['completion_tokens_max']} completion tokens; "
            f"cost {cost}"
        )
        return
    typer.echo(
        f"{summary['task']}: {summary['records']}/{summary['expected_records']} records, teacher accuracy "
        f"{summary['accuracy']:.3f}, {summary['questions_with_a_correct_sample']}/{summary['questions']} "
        f"questions with a correct sample, cost ${summary['cost_usd']:.4f}"
    )
    if summary["stopped"]:
        typer.echo(f"stopped early: {summary['stopped']}")
    typer.echo(f"wrote {cfg.run_dir}/teacher/{summary['task']}.jsonl")
