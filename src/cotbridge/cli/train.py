"""``cotbridge train``: fine-tune a student on prompt/completion data, in one process or under accelerate launch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.options import ConfigOpt, OutputOpt, in_range, set_option

SETTINGS = "cotbridge.train.config:TrainConfig"  # the keys listed under --help
SETTINGS_NOTE = "--model sets model and --output sets output_dir."
SetOpt = set_option("epochs=3")


def train_cmd(
    data: Annotated[str, typer.Argument(metavar="DATA", help="student dataset JSONL with prompt and completion")],
    model: Annotated[
        Optional[str], typer.Option(metavar="MODEL", help="student: hub id, folder, .gguf or embedded name")
    ] = None,
    dev: Annotated[
        Optional[str],
        typer.Option(metavar="FILE", help="dev examples JSONL (id, question, answer) scored during training"),
    ] = None,
    task: Annotated[Optional[str], typer.Option(metavar="TASK", help="the task whose rules score --dev")] = None,
    num_processes: Annotated[
        int,
        typer.Option(metavar="N", callback=in_range(ge=1), help="data-parallel processes through accelerate launch"),
    ] = 1,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune a student on prompt/completion data (LoRA by default; resumes from the last checkpoint)."""
    if num_processes > 1:
        import subprocess

        from cotbridge.train.launch_entry import launch_command

        args = ["--data", data] + sum(
            (
                ["--" + k, v]
                for k, v in (("model", model), ("dev", dev), ("task", task), ("output", output), ("config", config))
                if v
            ),
            [],
        )
        args += sum((["--set", s] for s in set_ or []), [])
        cmd, env = launch_command(args, num_processes)
        raise typer.Exit(subprocess.run(cmd, env=env).returncode)
    from cotbridge.train.launch_entry import train_from_files

    stats = train_from_files(data, config, set_, {"model": model, "output_dir": output}, dev=dev, task=task)
    typer.echo(
        f"trained {stats['global_step']} steps on {stats['examples']} examples, final loss "
        f"{stats['losses'][-1] if stats['losses'] else float('nan'):.4f}"
    )
