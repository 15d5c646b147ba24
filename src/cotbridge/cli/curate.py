"""``cotbridge curate``: teacher records filtered into a student dataset in one of the formats."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.options import DataDirOpt
from cotbridge.errors import UserError


def curate_cmd(
    records: Annotated[
        str, typer.Argument(metavar="RECORDS", help="teacher records JSONL (RUN_DIR/teacher/TASK.jsonl)")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="DIR", help="output folder for train.jsonl and curation.json")
    ],
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="finetune_cot, vanilla, natural or chat")
    ] = "finetune_cot",
    filters: Annotated[
        str, typer.Option(metavar="NAME,...", help="comma-separated: has_output, correct, complete, length, answer_f1")
    ] = "has_output,correct",
    dedupe: Annotated[bool, typer.Option("--dedupe", help="drop repeated rationales of one question")] = False,
    min_answer_f1: Annotated[
        float, typer.Option(metavar="FLOAT", help="the answer_f1 filter's threshold (span answers, token F1)")
    ] = 0.5,
    hf_dataset: Annotated[bool, typer.Option("--hf-dataset", help="also save a Hugging Face dataset")] = False,
    decontaminate: Annotated[
        bool,
        typer.Option(
            "--decontaminate/--no-decontaminate",
            help="drop records whose question overlaps a test question of any registered task (13-gram, exact or "
            "fuzzy); what was dropped and why goes to OUTPUT/decontamination.json",
        ),
    ] = True,
    data_dir: DataDirOpt = None,
    rationale: Annotated[
        str,
        typer.Option(
            metavar="SOURCE",
            help="for reasoning-model records: what the student learns, final (the response), thinking (the trace) "
            "or both (<think>trace</think> then the response); unfinished traces are always dropped",
        ),
    ] = "final",
    max_thinking_words: Annotated[
        Optional[int], typer.Option(metavar="N", help="drop records whose thinking trace is longer than N words")
    ] = None,
    compare_checker: Annotated[
        Optional[str],
        typer.Option(
            metavar="TYPE",
            help="also check each record's final output with this answer type (math: math-verify) and report "
            "where it disagrees with the record's own verdict (curation.json: checker_table)",
        ),
    ] = None,
    push_to_hub: Annotated[
        Optional[str],
        typer.Option(metavar="REPO", help="push the dataset to this hub repo (token from the environment)"),
    ] = None,
) -> None:
    """Filter teacher records and write a student dataset in one of the formats."""
    from cotbridge.curate import CurateSettings, curate_file
    from cotbridge.jsonl import read_jsonl
    from cotbridge.tasks import get_task

    first = next(iter(read_jsonl(records)), None)
    if first is None:
        raise UserError(f"{records}: no records")
    if "task" not in first:
        raise UserError(
            f"{records}:1: record has no 'task' field (curate reads teacher records from `cotbridge teach`)"
        )
    task = get_task(first["task"])
    stats = curate_file(
        records,
        output,
        fmt,
        task.answer_type,
        CurateSettings(
            filters=[f.strip() for f in filters.split(",") if f.strip()],
            dedupe=dedupe,
            min_answer_f1=min_answer_f1,
            decontaminate=decontaminate,
            data_dir=data_dir,
            rationale=rationale,
            max_thinking_words=max_thinking_words,
            compare_checker=compare_checker,
        ),
        hf_dataset=hf_dataset,
        push_to_hub=push_to_hub,
    )
    typer.echo(
        f"kept {stats['kept']} of {stats['records']} records ({stats['questions_kept']}/{stats['questions']} "
        f"questions); dropped {stats['dropped']}; wrote {output}/train.jsonl"
    )
    if "checker_table" in stats:
        t = stats["checker_table"]
        typer.echo(
            f"records' verdicts vs {stats['checker']}: both right {t['both_correct']}, only the records "
            f"{t['only_rules']}, only {stats['checker']} {t['only_checker']}, both wrong {t['both_wrong']}"
        )
    if "decontamination" in stats:
        d = stats["decontamination"]
        typer.echo(
            f"decontamination: dropped {d['dropped']} of {d['checked']} overlapping test questions "
            f"({', '.join(f'{k} {v}' for k, v in d['by_kind'].items()) or 'none'}; test splits of "
            f"{len(d['test_tasks'])} tasks, {len(d['skipped_tasks'])} without data here); "
            f"list: {output}/decontamination.json"
        )
