"""``cotbridge curate``: teacher records filtered into a student dataset in one of the formats.

Each option stands for a CurateConfig key (OPTIONS); its help is that key's comment, rendered from the config class.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cotbridge.cli.help_format import config_flags
from cotbridge.cli.options import ConfigOpt, set_option
from cotbridge.errors import UserError

SETTINGS = "cotbridge.curate:CurateConfig"
SetOpt = set_option("max_rationale_words=256")
OPTIONS = {
    "records": "records",
    "output": "output",
    "fmt": "format",
    "filters": "filters",
    "dedupe": "dedupe",
    "min_answer_f1": "min_answer_f1",
    "hf_dataset": "hf_dataset",
    "decontaminate": "decontaminate",
    "data_dir": "data_dir",
    "rationale": "rationale",
    "max_thinking_words": "max_thinking_words",
    "compare_checker": "compare_checker",
    "push_to_hub": "push_to_hub",
}
CHOICES = {"format": "cotbridge.prompts.formats:FORMATS", "filters": "cotbridge.curate:FILTERS"}
Str, Flag = Optional[str], Optional[bool]


def curate_cmd(
    records: Annotated[Str, typer.Argument(metavar="RECORDS")] = None,
    output: Annotated[Str, typer.Option("--output", "-o", metavar="DIR")] = None,
    fmt: Annotated[Str, typer.Option("--format", metavar="FORMAT")] = None,
    filters: Annotated[Str, typer.Option(metavar="NAME,...")] = None,
    dedupe: Annotated[Flag, typer.Option("--dedupe")] = None,
    min_answer_f1: Annotated[Optional[float], typer.Option(metavar="FLOAT")] = None,
    hf_dataset: Annotated[Flag, typer.Option("--hf-dataset")] = None,
    decontaminate: Annotated[Flag, typer.Option("--decontaminate/--no-decontaminate")] = None,
    data_dir: Annotated[Str, typer.Option(metavar="DIR")] = None,
    rationale: Annotated[Str, typer.Option(metavar="SOURCE")] = None,
    max_thinking_words: Annotated[Optional[int], typer.Option(metavar="N")] = None,
    compare_checker: Annotated[Str, typer.Option(metavar="TYPE")] = None,
    push_to_hub: Annotated[Str, typer.Option(metavar="REPO")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Filter teacher records and write a student dataset in one of the formats."""
    from cotbridge.config import load_config
    from cotbridge.curate import CurateConfig, curate_file

    if filters is not None:
        filters = [f.strip() for f in filters.split(",") if f.strip()]  # type: ignore[assignment]
    cfg = load_config(CurateConfig, config, set_, config_flags(locals(), OPTIONS))
    if cfg.records is None or cfg.output is None:
        raise UserError("curate needs RECORDS and --output (or records: and output: in --config)")
    stats = curate_file(
        cfg.records, cfg.output, cfg.format, answer_type(cfg.records), cfg.settings(), cfg.hf_dataset, cfg.push_to_hub
    )
    typer.echo(describe(stats, cfg.output))


def answer_type(records: str) -> str:
    """The answer type of the task the records' first line names."""
    from cotbridge.jsonl import read_jsonl
    from cotbridge.tasks import get_task

    first = next(iter(read_jsonl(records)), None)
    if first is None:
        raise UserError(f"{records}: no records")
    if "task" not in first:
        raise UserError(
            f"{records}:1: record has no 'task' field (curate reads teacher records from `cotbridge teach`)"
        )
    return get_task(first["task"]).answer_type


def describe(stats: dict[str, Any], output: str) -> str:
    lines = [
        f"kept {stats['kept']} of {stats['records']} records ({stats['questions_kept']}/{stats['questions']} "
        f"questions); dropped {stats['dropped']}; wrote {output}/train.jsonl"
    ]
    if "checker_table" in stats:
        t = stats["checker_table"]
        lines.append(
            f"records' verdicts vs {stats['checker']}: both right {t['both_correct']}, only the records "
            f"{t['only_rules']}, only {stats['checker']} {t['only_checker']}, both wrong {t['both_wrong']}"
        )
    if "decontamination" in stats:
        d = stats["decontamination"]
        lines.append(
            f"decontamination: dropped {d['dropped']} of {d['checked']} overlapping test questions "
            f"({', '.join(f'{k} {v}' for k, v in d['by_kind'].items()) or 'none'}; test splits of "
            f"{len(d['test_tasks'])} tasks, {len(d['skipped_tasks'])} without data here); "
            f"list: {output}/decontamination.json"
        )
    return "\n".join(lines)
