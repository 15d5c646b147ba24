"""The ``cotbridge`` command line. User errors print one line and exit 2; no tracebacks."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from cotbridge.errors import UserError

QUICKSTART = """
Quick start (offline):

  cotbridge tasks
  cotbridge eval --model ../shared/data/models/smollm2-135m-instruct-q4_1 --task synthetic_arithmetic:k=2 --limit 20
  cotbridge eval --task svamp --data-dir ../shared/data --predictions teacher.jsonl --text-field cot.generation.0 --gold-field target
"""

app = typer.Typer(help="cotbridge: transfer chain-of-thought reasoning between large and small language models.\n" + QUICKSTART,
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)

# Options shared by several commands, defined once.
DataDirOpt = Annotated[Optional[str], typer.Option("--data-dir", help="folder with task data (Fine-tune-CoT layout, gsm8k/, multihop/); default $COTBRIDGE_DATA_DIR, else the HF hub")]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML config file")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set k=8 (repeatable)")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="output directory")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command("tasks")
def tasks_cmd(data_dir: DataDirOpt = None) -> None:
    """List every registered task with its answer type, version and split sizes."""
    from cotbridge.tasks import TASKS, get_task

    rows = [("task", "family", "answer", "version", "train", "test", "params")]
    for name in TASKS:
        t = get_task(name)
        params = ",".join(f"{k}={v}" for k, v in t.params.items())
        rows.append((name, t.family, t.answer_type + (f" {t.choice_letters[0]}-{t.choice_letters[-1]}" if t.choice_letters else ""),
                     t.version, str(t.sizes["train"]), str(t.sizes["test"]), params))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@app.command("eval")
def eval_cmd(
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="task name, or name:key=value for synthetic tasks (repeatable)")] = None,
    model: Annotated[Optional[str], typer.Option(help="hub id, local folder, or .gguf file")] = None,
    mode: Annotated[Optional[str], typer.Option(help="prompt mode: zero_shot, zero_shot_cot, zero_shot_cot_single, few_shot_cot, finetune_cot, vanilla, natural")] = None,
    k: Annotated[Optional[int], typer.Option(help="samples per question; k>1 is self-consistency (majority vote)")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature (default 0, or 0.7 when k>1)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="evaluate the first N examples of each task")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="sequences per generation batch")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="max new tokens (stage 1)")] = None,
    chat: Annotated[Optional[bool], typer.Option("--chat/--no-chat", help="wrap prompts in the model's chat template")] = None,
    few_shot_prompts: Annotated[Optional[str], typer.Option(help="few-shot exemplars JSON ({task: {prompt}}) for few_shot_cot")] = None,
    split: Annotated[Optional[str], typer.Option(help="train or test")] = None,
    predictions: Annotated[Optional[str], typer.Option(help="score this JSONL of recorded outputs instead of running a model")] = None,
    text_field: Annotated[str, typer.Option(help="dotted path of the output text in --predictions records")] = "output",
    gold_field: Annotated[Optional[str], typer.Option(help="dotted path of the gold answer in --predictions records")] = None,
    id_field: Annotated[Optional[str], typer.Option(help="dotted path of an index into the task's split")] = None,
    reference_field: Annotated[Optional[str], typer.Option(help="dotted path of a recorded 0/1 score to compare with")] = None,
    pipeline: Annotated[Optional[str], typer.Option(help="answer-extraction pipeline (default, finetune_cot, answer_stage, lmeval)")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
) -> None:
    """Evaluate a model on tasks (or score recorded outputs with --predictions)."""
    from cotbridge.config import load_config

    if predictions:
        from cotbridge.evaluation.predictions import score_predictions

        if not task or len(task) != 1:
            raise UserError("--predictions scores one task: pass exactly one --task")
        summary = score_predictions(task[0], predictions, text_field, output or "runs/scored", gold_field=gold_field,
                                    id_field=id_field, reference_field=reference_field, pipeline=pipeline or "default",
                                    data_dir=data_dir)
        _print_results(summary["results"], output or "runs/scored")
        return
    from cotbridge.evaluation.run import EvalConfig, run_eval

    flags = dict(tasks=task, model=model, mode=mode, k=k, temperature=temperature, limit=limit, batch_size=batch_size,
                 max_tokens=max_tokens, chat=chat, few_shot_prompts=few_shot_prompts, split=split, pipeline=pipeline,
                 data_dir=data_dir, output=output)
    cfg = load_config(EvalConfig, config, set_, flags)
    summary = run_eval(cfg)
    _print_results(summary["results"], cfg.output)


@app.command("teach")
def teach_cmd(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="task name (or name:key=value)")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="teacher backend: reference, replay, openai, hf, vllm")] = None,
    teacher_model: Annotated[Optional[str], typer.Option(help="teacher model id / path (replay: the JSONL file)")] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", "-D", help="rationales per question (diverse reasoning)")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="sampling temperature (default 0, or 0.7 when D>1)")] = None,
    mode: Annotated[Optional[str], typer.Option(help="zero_shot_cot (two-stage), zero_shot_cot_single, few_shot_cot")] = None,
    split: Annotated[Optional[str], typer.Option(help="train (default) or test")] = None,
    limit: Annotated[Optional[int], typer.Option(help="first N questions")] = None,
    run_dir: Annotated[Optional[str], typer.Option(help="run directory (records go to <run_dir>/teacher/<task>.jsonl)")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="stop cleanly before spending more than this many USD")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="estimate tokens and cost of what is left; call nothing")] = False,
    batch_export: Annotated[Optional[str], typer.Option(help="write missing calls as OpenAI Batch API input JSONL")] = None,
    batch_import: Annotated[Optional[str], typer.Option(help="load Batch API output into the cache, then finish the run")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run a teacher over a task split: one record per (question, sample); rerun to resume."""
    from cotbridge.config import load_config
    from cotbridge.teach import TeachConfig, run_teach

    flags = {"task": task, "teacher.backend": teacher, "teacher.model": teacher_model, "samples": samples,
             "temperature": temperature, "mode": mode, "split": split, "limit": limit, "run_dir": run_dir,
             "max_cost": max_cost, "dry_run": dry_run or None, "data_dir": data_dir, "batch_export": batch_export,
             "batch_import": batch_import}
    cfg = load_config(TeachConfig, config, set_, flags)
    summary = run_teach(cfg)
    if "batch_exported" in summary:
        typer.echo(f"wrote {summary['batch_exported']} Batch API requests to {summary['path']}; upload it, then rerun "
                   "with --batch-import RESULTS.jsonl")
        return
    if "dry_run" in summary:
        est = summary["dry_run"]
        cost = "unknown (no price for this model)" if est["cost_usd_max"] is None else f"at most ${est['cost_usd_max']:.4f}"
        typer.echo(f"dry run: {est['samples']} samples for {est['questions']} questions left; ~{est['prompt_tokens']} prompt "
                   f"tokens, at most {est['completion_tokens_max']} completion tokens; cost {cost}")
        return
    typer.echo(f"{summary['task']}: {summary['records']}/{summary['expected_records']} records, teacher accuracy "
               f"{summary['accuracy']:.3f}, {summary['questions_with_a_correct_sample']}/{summary['questions']} questions "
               f"with a correct sample, cost ${summary['cost_usd']:.4f}")
    if summary["stopped"]:
        typer.echo(f"stopped early: {summary['stopped']}")
    typer.echo(f"wrote {cfg.run_dir}/teacher/{summary['task']}.jsonl")


@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Argument(help="hub id, local folder, or .gguf file")],
    host: Annotated[str, typer.Option(help="address to listen on (the server has no authentication: keep it local)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = 8000,
    batch_size: Annotated[int, typer.Option(help="sequences per generation batch")] = 16,
    gguf_file: Annotated[Optional[str], typer.Option(help="GGUF file inside a model folder holding several")] = None,
    faults: Annotated[Optional[str], typer.Option(help="inject faults, e.g. rate=0.3,seed=0,kinds=429,500,hang,malformed,drop,retry_after=1,hang_s=5")] = None,
    latency_ms: Annotated[float, typer.Option(help="extra latency per request, slept outside the generation lock")] = 0.0,
    request_log: Annotated[Optional[str], typer.Option(help="append every received request to this JSONL file")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from cotbridge.server import OpenAICompatServer, parse_faults

    spec = parse_faults(faults)  # bad specs fail before the model loads
    if latency_ms < 0:
        raise UserError(f"--latency-ms must not be negative, got {latency_ms}")
    from cotbridge.backends.hf import HFBackend

    backend = HFBackend(model, gguf_file=gguf_file, batch_size=batch_size)
    server = OpenAICompatServer(backend, host=host, port=port, faults=spec, latency_ms=latency_ms, request_log=request_log)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("cotbridge.server").warning("listening on %s: anyone who can reach it can use the model", host)
    typer.echo(f"serving {model} at {server.url} (OpenAI-compatible; Ctrl-C stops)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopping", err=True)
    finally:
        server.stop()


@app.command("lmguided")
def lmguided_cmd(
    config: Annotated[str, typer.Argument(help="LM-guided CoT config YAML (see recipes/lm_guided_cot_offline.yaml)")],
    from_stage: Annotated[Optional[str], typer.Option("--from", help="redo this stage and the later ones: teach, kd, rl, eval, score, report")] = None,
    until: Annotated[Optional[str], typer.Option(help="stop after this stage")] = None,
    set_: SetOpt = None,
) -> None:
    """Small model writes rationales, frozen large model answers: teach -> KD -> RL -> eval -> score -> report."""
    from cotbridge.config import load_config
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig
    from cotbridge.recipes.lm_guided.recipe import run_lmguided

    cfg = load_config(LMGuidedConfig, config, set_)
    summary = run_lmguided(cfg, from_stage, until)
    for row, per_task in summary.get("results", {}).items():
        cells = "  ".join(f"{t} EM {100 * m['em']:.1f} F1 {100 * m['f1']:.1f} (n={m['n']})" for t, m in per_task.items())
        typer.echo(f"{row:>10}: {cells}")
    typer.echo(f"report: {cfg.directory() / 'report.md'}" if "results" in summary else f"stopped after {until}")


@app.command("score")
def score_cmd(
    items: Annotated[str, typer.Argument(help="JSONL of rationales (question, rationale, optional context)")],
    output: Annotated[str, typer.Option("--output", "-o", help="scored JSONL to write")],
    scorers: Annotated[Optional[str], typer.Option(help="comma-separated: lm_fluency, embedding_relevance, lexical_relevance, grounding, flesch, judge (default: the automatic ones)")] = None,
    question_field: Annotated[Optional[str], typer.Option(help="dotted path of the question (default question)")] = None,
    rationale_field: Annotated[Optional[str], typer.Option(help="dotted path of the rationale (default rationale)")] = None,
    context_field: Annotated[Optional[str], typer.Option(help="dotted path of the context paragraphs (default: context, if present)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score rationales on the eight LM-guided CoT aspects (judge model and/or cheap automatic scorers)."""
    from cotbridge.config import load_config
    from cotbridge.quality.score_file import ScoreConfig, run_score

    flags = {"input": items, "output": output, "scorers": [s.strip() for s in scorers.split(",") if s.strip()] if scorers else None,
             "question_field": question_field, "rationale_field": rationale_field, "context_field": context_field}
    cfg = load_config(ScoreConfig, config, set_, flags)
    summary = run_score(cfg)
    for key, cell in summary["means"].items():
        typer.echo(f"{key:>32}: {cell['mean']:.3f} (n={cell['n']})")
    typer.echo(f"wrote {cfg.output}")


@app.command("curate")
def curate_cmd(
    records: Annotated[str, typer.Argument(help="teacher records JSONL (<run_dir>/teacher/<task>.jsonl)")],
    output: Annotated[str, typer.Option("--output", "-o", help="output folder for train.jsonl and curation.json")],
    fmt: Annotated[str, typer.Option("--format", help="finetune_cot, vanilla, natural or chat")] = "finetune_cot",
    filters: Annotated[str, typer.Option(help="comma-separated: has_output, correct, complete, length, answer_f1")] = "has_output,correct",
    dedupe: Annotated[bool, typer.Option("--dedupe", help="drop repeated rationales of one question")] = False,
    min_answer_f1: Annotated[float, typer.Option(help="the answer_f1 filter's threshold (span answers, token F1)")] = 0.5,
    hf_dataset: Annotated[bool, typer.Option("--hf-dataset", help="also save a Hugging Face dataset")] = False,
    push_to_hub: Annotated[Optional[str], typer.Option(help="push the dataset to this hub repo (token from the environment)")] = None,
) -> None:
    """Filter teacher records and write a student dataset in one of the formats."""
    from cotbridge.curate import CurateSettings, curate_file
    from cotbridge.jsonl import read_jsonl
    from cotbridge.tasks import get_task

    first = next(iter(read_jsonl(records)), None)
    if first is None:
        raise UserError(f"{records}: no records")
    task = get_task(first["task"])
    stats = curate_file(records, output, fmt, task.answer_type,
                        CurateSettings(filters=[f.strip() for f in filters.split(",") if f.strip()], dedupe=dedupe,
                                       min_answer_f1=min_answer_f1),
                        hf_dataset=hf_dataset, push_to_hub=push_to_hub)
    typer.echo(f"kept {stats['kept']} of {stats['records']} records ({stats['questions_kept']}/{stats['questions']} questions); "
               f"dropped {stats['dropped']}; wrote {output}/train.jsonl")


@app.command("train")
def train_cmd(
    data: Annotated[str, typer.Argument(help="student dataset JSONL with prompt and completion")],
    model: Annotated[Optional[str], typer.Option(help="student: hub id, folder, .gguf or embedded name")] = None,
    dev: Annotated[Optional[str], typer.Option(help="dev examples JSONL (id, question, answer) scored during training")] = None,
    task: Annotated[Optional[str], typer.Option(help="the task whose rules score --dev")] = None,
    num_processes: Annotated[int, typer.Option(help="data-parallel processes through accelerate launch")] = 1,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune a student on prompt/completion data (LoRA by default; resumes from the last checkpoint)."""
    if num_processes > 1:
        import subprocess

        from cotbridge.train.launch_entry import launch_command

        args = ["--data", data] + sum((["--" + k, v] for k, v in (("model", model), ("dev", dev), ("task", task),
                                                                   ("output", output), ("config", config)) if v), [])
        args += sum((["--set", s] for s in set_ or []), [])
        cmd, env = launch_command(args, num_processes)
        raise typer.Exit(subprocess.run(cmd, env=env).returncode)
    from cotbridge.train.launch_entry import train_from_files

    stats = train_from_files(data, config, set_, {"model": model, "output_dir": output}, dev=dev, task=task)
    typer.echo(f"trained {stats['global_step']} steps on {stats['examples']} examples, final loss "
               f"{stats['losses'][-1] if stats['losses'] else float('nan'):.4f}")


@app.command("run")
def run_cmd(
    config: Annotated[str, typer.Argument(help="run config YAML (see examples/ and recipes/)")],
    from_stage: Annotated[Optional[str], typer.Option("--from", help="redo this stage and the later ones: teach, curate, train, eval, report")] = None,
    set_: SetOpt = None,
) -> None:
    """Teach -> curate -> train -> eval -> report in one resumable run directory."""
    from cotbridge.config import load_config
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.finetune_cot.recipe import run_pipeline

    cfg = load_config(RunConfig, config, set_)
    summary = run_pipeline(cfg, from_stage)
    for method, res in summary["results"].items():
        for task, m in res.items():
            typer.echo(f"{method:>24} {task}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']})")
    typer.echo(f"report: {summary['report'].get('report.md', cfg.directory() / 'report.md')}")


@app.command("instruct")
def instruct_cmd(
    config: Annotated[str, typer.Argument(help="instruction-tuning config YAML (see recipes/instruction_tuning_*.yaml)")],
    from_stage: Annotated[Optional[str], typer.Option("--from", help="redo this stage and the later ones: teach, merge, train, eval, report")] = None,
    set_: SetOpt = None,
) -> None:
    """Several teachers -> instruction-tuned students -> in-domain x out-of-domain matrix (resumable)."""
    from cotbridge.config import load_config
    from cotbridge.recipes.instruct.config import InstructConfig
    from cotbridge.recipes.instruct.recipe import run_instruct

    cfg = load_config(InstructConfig, config, set_)
    summary = run_instruct(cfg, from_stage)
    for row in summary["matrix"]["rows"]:
        cells = "  ".join(f"{t} {100 * c['accuracy']:.1f}% (n={c['n']})" for t, c in row["cells"].items())
        typer.echo(f"{row['name']:>32}: {cells}")
    typer.echo(f"matrix: {cfg.directory() / 'matrix.md'} (+ .json, .png)")


def _print_results(results: dict, output: str) -> None:
    for name, m in results.items():
        extra = "".join(f"  {key} {m[key]:.3f}" for key in ("em", "f1", "agreement") if key in m)
        typer.echo(f"{name}: accuracy {m['accuracy']:.3f} ± {m['accuracy_stderr']:.3f} (n={m['n']}){extra}")
    typer.echo(f"wrote {output}/results.json")


def main() -> None:
    try:
        app()
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
