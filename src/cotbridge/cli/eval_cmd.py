"""``cotbridge eval``: a model on tasks, or recorded outputs (``--predictions``) scored by the task's rules."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cotbridge.cli.help_format import config_flags
from cotbridge.cli.options import ConfigOpt, set_option
from cotbridge.errors import UserError

SETTINGS = "cotbridge.evaluation.run:EvalConfig"  # the keys listed under --help
SetOpt = set_option("k=8")

# Options that stand for EvalConfig keys (help: the key's comment; range: the key's, checked while the command line is
# parsed, before --predictions or a model is looked at); the --predictions options are scoring's own.
OPTIONS = {
    "task": "tasks",
    "model": "model",
    "mode": "mode",
    "k": "k",
    "temperature": "temperature",
    "limit": "limit",
    "batch_size": "batch_size",
    "max_tokens": "max_tokens",
    "chat": "chat",
    "few_shot_prompts": "few_shot_prompts",
    "split": "split",
    "pipeline": "pipeline",
    "data_dir": "data_dir",
    "output": "output",
}
CHOICES = {"mode": "cotbridge.prompts.modes:PROMPT_MODES", "pipeline": "cotbridge.answers.extract:PIPELINES"}
SCORING = (  # the --predictions path's own options: no EvalConfig behind them
    "predictions",
    "text_field",
    "gold_field",
    "id_field",
    "id_template",
    "question_field",
    "reference_field",
    "compare_checker",
)
Str, Int, Float = Optional[str], Optional[int], Optional[float]


def field_option(help: str, metavar: str = "FIELD", kind: Any = Str) -> Any:
    """One of the --predictions path's own options (their help is here: no config key stands behind them)."""
    return Annotated[kind, typer.Option(metavar=metavar, help=help)]


PredictionsOpt = field_option("score this JSONL of recorded outputs instead of running a model", "FILE")
TextFieldOpt = field_option("dotted path of the output text in --predictions records", kind=str)
GoldFieldOpt = field_option("dotted path of the gold answer in --predictions records")
IdFieldOpt = field_option(
    "dotted path of the record's id, matched to the ids of the task's split (--split, default test); "
    "the record's question, where it has one, must be that id's question"
)
IdTemplateOpt = field_option("how a record's id reads as a split id, e.g. 'test-{}' for GSM8K's", "TEMPLATE", str)
QuestionFieldOpt = field_option(
    "with --id-field: dotted path of the record's question, checked against the split's "
    "(default: its question or input field, if any)"
)
ReferenceFieldOpt = field_option("dotted path of a recorded 0/1 score to compare with")
CompareCheckerOpt = field_option(
    "with --predictions: also check every output with this answer type (math: math-verify) and "
    "report where it and the task's rules disagree",
    "TYPE",
)


def eval_cmd(
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", metavar="TASK")] = None,
    model: Annotated[Str, typer.Option(metavar="MODEL")] = None,
    mode: Annotated[Str, typer.Option(metavar="MODE")] = None,
    k: Annotated[Int, typer.Option(metavar="N")] = None,
    temperature: Annotated[Float, typer.Option(metavar="FLOAT")] = None,
    limit: Annotated[Int, typer.Option(metavar="N")] = None,
    batch_size: Annotated[Int, typer.Option(metavar="N")] = None,
    max_tokens: Annotated[Int, typer.Option(metavar="N")] = None,
    chat: Annotated[Optional[bool], typer.Option("--chat/--no-chat")] = None,
    few_shot_prompts: Annotated[Str, typer.Option(metavar="FILE")] = None,
    split: Annotated[Str, typer.Option(metavar="SPLIT")] = None,
    predictions: PredictionsOpt = None,
    text_field: TextFieldOpt = "output",
    gold_field: GoldFieldOpt = None,
    id_field: IdFieldOpt = None,
    id_template: IdTemplateOpt = "{}",
    question_field: QuestionFieldOpt = None,
    reference_field: ReferenceFieldOpt = None,
    pipeline: Annotated[Str, typer.Option(metavar="NAME")] = None,
    compare_checker: CompareCheckerOpt = None,
    data_dir: Annotated[Str, typer.Option(metavar="DIR")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: Annotated[Str, typer.Option("--output", "-o", metavar="DIR")] = None,
) -> None:
    """Evaluate a model on tasks (or score recorded outputs with --predictions)."""
    given = locals()
    if predictions:
        score_recorded({**given, "split": split or "test", "output": output or "runs/scored"})
        return
    from cotbridge.config import load_config
    from cotbridge.evaluation.run import EvalConfig, run_eval

    cfg = load_config(EvalConfig, config, set_, config_flags(given, OPTIONS))
    summary = run_eval(cfg)
    print_results(summary["results"], str(cfg.output_dir()))


def score_recorded(given: dict[str, Any]) -> None:
    """``--predictions``: recorded outputs scored by the task's rules (no model, no EvalConfig)."""
    from cotbridge.evaluation.predictions import score_predictions

    if not given["task"] or len(given["task"]) != 1:
        raise UserError("--predictions scores one task: pass exactly one --task")
    options = ("gold_field", "id_field", "id_template", "question_field", "reference_field", "data_dir", "split")
    summary = score_predictions(
        given["task"][0],
        given["predictions"],
        given["text_field"],
        given["output"],
        pipeline=given["pipeline"] or "default",
        compare_checker=given["compare_checker"],
        **{name: given[name] for name in options},
    )
    print_results(summary["results"], given["output"])
    for name, m in summary["results"].items():
        if "checker_table" in m:
            t = m["checker_table"]
            typer.echo(
                f"{name}: task rules vs {m['checker']}: both right {t['both_correct']}, only the rules "
                f"{t['only_rules']}, only {m['checker']} {t['only_checker']}, both wrong {t['both_wrong']}"
            )


def print_results(results: dict, output: str) -> None:
    for name, m in results.items():
        extra = "".join(f"  {key} {m[key]:.3f}" for key in ("em", "f1", "agreement") if key in m)
        if m.get("skipped"):  # prompts longer than the model's context window: in n, counted wrong
            sk = m["skipped"]
            extra += f"  skipped {sk['count']} questions / {sk['samples']} samples, counted wrong ({sk['reason']})"
        typer.echo(f"{name}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']}){extra}")
    typer.echo(f"wrote {output}/results.json")
