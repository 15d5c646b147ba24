"""``cotbridge eval``: a model on tasks, or recorded outputs (``--predictions``) scored by the task's rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from cotbridge.cli.options import ConfigOpt, DataDirOpt, OutputOpt, set_option
from cotbridge.errors import UserError

SETTINGS = "cotbridge.evaluation.run:EvalConfig"  # the keys listed under --help
SetOpt = set_option("k=8")


def at_least(low: float, what: str) -> Callable[..., Any]:
    """An option callback that refuses a value below ``low`` while the command line is parsed (before a model or a
    file is touched), in the one-line form every user error takes."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is not None and value < low:
            name = (param.opts or [f"--{param.name}"])[0]
            raise UserError(
                f"{name} {value}: must be greater than or equal to {low} ({what}); pass {name} {low} or more"
            )
        return value

    return check


def eval_cmd(
    task: Annotated[
        Optional[list[str]],
        typer.Option(
            "--task", "-t", metavar="TASK", help="task name, or name:key=value for synthetic tasks (repeatable)"
        ),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(metavar="MODEL", help="hub id, local folder, .gguf file or embedded name")
    ] = None,
    mode: Annotated[
        Optional[str],
        typer.Option(
            metavar="MODE",
            help="prompt mode: zero_shot, zero_shot_cot, zero_shot_cot_single, few_shot_cot, "
            "finetune_cot, vanilla, natural",
        ),
    ] = None,
    k: Annotated[
        Optional[int],
        typer.Option(
            metavar="N",
            callback=at_least(1, "samples per question"),
            help="samples per question; k>1 is self-consistency (majority vote)",
        ),
    ] = None,
    temperature: Annotated[
        Optional[float],
        typer.Option(
            metavar="FLOAT",
            callback=at_least(0, "the sampling temperature"),
            help="sampling temperature (default 0, or 0.7 when k>1)",
        ),
    ] = None,
    limit: Annotated[
        Optional[int],
        typer.Option(
            metavar="N", callback=at_least(1, "examples per task"), help="evaluate the first N examples of each task"
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            metavar="N", callback=at_least(1, "sequences per generation batch"), help="sequences per generation batch"
        ),
    ] = None,
    max_tokens: Annotated[
        Optional[int],
        typer.Option(metavar="N", callback=at_least(1, "new tokens per answer"), help="max new tokens (stage 1)"),
    ] = None,
    chat: Annotated[
        Optional[bool], typer.Option("--chat/--no-chat", help="wrap prompts in the model's chat template")
    ] = None,
    few_shot_prompts: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="few-shot exemplars JSON ({task: {prompt}}) for few_shot_cot")
    ] = None,
    split: Annotated[Optional[str], typer.Option(metavar="SPLIT", help="train or test")] = None,
    predictions: Annotated[
        Optional[str],
        typer.Option(metavar="FILE", help="score this JSONL of recorded outputs instead of running a model"),
    ] = None,
    text_field: Annotated[
        str, typer.Option(metavar="FIELD", help="dotted path of the output text in --predictions records")
    ] = "output",
    gold_field: Annotated[
        Optional[str], typer.Option(metavar="FIELD", help="dotted path of the gold answer in --predictions records")
    ] = None,
    id_field: Annotated[
        Optional[str],
        typer.Option(
            metavar="FIELD",
            help="dotted path of the record's id, matched to the ids of the task's split (--split, default test); "
            "the record's question, where it has one, must be that id's question",
        ),
    ] = None,
    id_template: Annotated[
        str,
        typer.Option(metavar="TEMPLATE", help="how a record's id reads as a split id, e.g. 'test-{}' for GSM8K's"),
    ] = "{}",
    question_field: Annotated[
        Optional[str],
        typer.Option(
            metavar="FIELD",
            help="with --id-field: dotted path of the record's question, checked against the split's "
            "(default: its question or input field, if any)",
        ),
    ] = None,
    reference_field: Annotated[
        Optional[str], typer.Option(metavar="FIELD", help="dotted path of a recorded 0/1 score to compare with")
    ] = None,
    pipeline: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", help="answer-extraction pipeline (default, finetune_cot, answer_stage, lmeval)"),
    ] = None,
    compare_checker: Annotated[
        Optional[str],
        typer.Option(
            metavar="TYPE",
            help="with --predictions: also check every output with this answer type (math: math-verify) and "
            "report where it and the task's rules disagree",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
) -> None:
    """Evaluate a model on tasks (or score recorded outputs with --predictions)."""
    if predictions:
        from cotbridge.evaluation.predictions import score_predictions

        if not task or len(task) != 1:
            raise UserError("--predictions scores one task: pass exactly one --task")
        summary = score_predictions(
            task[0],
            predictions,
            text_field,
            output or "runs/scored",
            gold_field=gold_field,
            id_field=id_field,
            id_template=id_template,
            question_field=question_field,
            reference_field=reference_field,
            pipeline=pipeline or "default",
            data_dir=data_dir,
            split=split or "test",
            compare_checker=compare_checker,
        )
        print_results(summary["results"], output or "runs/scored")
        for name, m in summary["results"].items():
            if "checker_table" in m:
                t = m["checker_table"]
                typer.echo(
                    f"{name}: task rules vs {m['checker']}: both right {t['both_correct']}, only the rules "
                    f"{t['only_rules']}, only {m['checker']} {t['only_checker']}, both wrong {t['both_wrong']}"
                )
        return
    from cotbridge.config import load_config
    from cotbridge.evaluation.run import EvalConfig, run_eval

    flags = dict(
        tasks=task,
        model=model,
        mode=mode,
        k=k,
        temperature=temperature,
        limit=limit,
        batch_size=batch_size,
        max_tokens=max_tokens,
        chat=chat,
        few_shot_prompts=few_shot_prompts,
        split=split,
        pipeline=pipeline,
        data_dir=data_dir,
        output=output,
    )
    cfg = load_config(EvalConfig, config, set_, flags)
    summary = run_eval(cfg)
    print_results(summary["results"], str(cfg.output_dir()))


def print_results(results: dict, output: str) -> None:
    for name, m in results.items():
        extra = "".join(f"  {key} {m[key]:.3f}" for key in ("em", "f1", "agreement") if key in m)
        typer.echo(f"{name}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']}){extra}")
    typer.echo(f"wrote {output}/results.json")
