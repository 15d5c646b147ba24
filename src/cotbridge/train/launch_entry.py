"""Train a student from files, in one process or in several under ``accelerate launch``.

    accelerate launch --multi_gpu --num_processes 2 -m cotbridge.train.launch_entry \\
        --data train.jsonl --config student.yaml [--set lr=1e-4] [--dev dev.jsonl --task multiarith]
        [--trainer on_policy]   # on-policy distillation (train/on_policy.py) instead of SFT

Every process runs :func:`train_from_files` -> :func:`~cotbridge.train.sft.train_student` unchanged:
the Trainer reads the process group that ``accelerate launch`` set up (gloo on CPU, NCCL on GPUs),
gives each process its share of every batch, and only the main process writes the model and the
stats file. :func:`launch_command` builds the launcher's command line; a multi-process
``cotbridge train`` can run it, and the single-process command can call :func:`train_from_files`.

On machines without GPUs, note accelerate's naming: ``--cpu`` selects its single-process launcher
(several CPU processes only through MPI); the torchrun launcher behind ``--multi_gpu`` starts the
processes, and the Trainer (``use_cpu`` whenever CUDA is missing) joins them with gloo on CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from cotbridge.errors import UserError

log = logging.getLogger(__name__)
ENTRY_MODULE = "cotbridge.train.launch_entry"
STATS_FILE = "train_stats.json"  # in output_dir, written by the main process when training ends


def read_dev_examples(path: str | Path) -> list[Any]:
    """Dev examples from a JSONL of task examples (``id``, ``question``, ``answer``; optional Example fields)."""
    from dataclasses import fields

    from cotbridge.errors import DataError
    from cotbridge.jsonl import numbered_jsonl
    from cotbridge.tasks.base import Example

    known = {f.name for f in fields(Example)}
    out = []
    for i, row in numbered_jsonl(path):
        if not {"id", "question", "answer"} <= row.keys():
            raise DataError(path, "a dev example needs id, question and answer", line=i)
        out.append(Example(**{k: v for k, v in row.items() if k in known}))
    return out


# trainer name -> (its config class, its training function), "module:attribute", imported when chosen
TRAINERS = {
    "sft": ("cotbridge.train.config:TrainConfig", "cotbridge.train.sft:train_student"),
    "on_policy": ("cotbridge.train.on_policy:OnPolicyConfig", "cotbridge.train.on_policy:train_on_policy"),
}


def _load(spec: str) -> Any:
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def train_from_files(
    data: str | Path,
    config: str | Path | None = None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    dev: str | Path | None = None,
    task: str | None = None,
    stats_file: str | Path | None = None,
    trainer: str = "sft",
) -> dict[str, Any]:
    """Load the config (defaults < YAML < ``--set`` < flags) and the data; train with ``trainer`` (sft: SFT on
    prompt/completion rows; on_policy: on-policy distillation toward ``teacher`` from the rows' prompts); write the
    stats (main process)."""
    from cotbridge.config import load_config
    from cotbridge.jsonl import write_json
    from cotbridge.train.rows import read_training_rows

    if trainer not in TRAINERS:
        raise UserError(f"unknown trainer {trainer!r}; choose one of {', '.join(TRAINERS)}")
    config_class, train = (_load(spec) for spec in TRAINERS[trainer])
    cfg = load_config(config_class, config, sets, flags)
    if (dev is None) != (task is None):
        raise UserError("--dev and --task go together: the task's rules score the dev examples")
    examples = read_training_rows(data, trainer)  # every row checked before a model is loaded
    if trainer == "sft":
        stats = train(cfg, examples, dev_examples=read_dev_examples(dev) if dev else None, task=task)
    elif dev:
        raise UserError(f"--dev scores SFT students during training; the {trainer} trainer takes no --dev")
    else:
        stats = train(cfg, examples)
    if _is_main_process():
        write_json(stats_file or Path(cfg.output_dir) / STATS_FILE, {**stats, "output_dir": cfg.output_dir})
    return stats


def _is_main_process() -> bool:
    # The Trainer has set up accelerate's shared state by now; without a launcher this is process 0 of 1.
    from accelerate import PartialState

    return PartialState().is_main_process


def launch_command(
    entry_args: list[str],
    num_processes: int,
    *,
    cpu: bool = False,
    port: int | None = None,
    threads_per_process: int | None = None,
    config_file: str | Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run this module in ``num_processes`` processes under ``accelerate launch``.

    ``cpu``: hide GPUs and train on CPU with gloo. ``port``: the rendezvous port (pick a free one when
    several launches may run at once). ``config_file``: an accelerate config (recipes/accelerate/fsdp.yaml,
    deepspeed_zero2.yaml) whose distributed type replaces plain data parallelism; the flags given here win over it.
    The ``accelerate`` executable next to the running Python is preferred, so a virtual environment's own
    accelerate is used even when it is not on PATH.
    """
    local = Path(sys.executable).parent / "accelerate"
    exe = str(local) if local.exists() else shutil.which("accelerate") or "accelerate"
    cmd = [exe, "launch", *(["--config_file", str(config_file)] if config_file is not None else [])]
    cmd += [
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if num_processes > 1 and config_file is None:
        cmd.append("--multi_gpu")  # accelerate's torchrun launcher, for CPU processes too (see the module doc)
    elif cpu and num_processes == 1:
        cmd.append("--cpu")
    if port is not None:
        cmd += ["--main_process_port", str(port)]
    threads = threads_per_process or max(1, (os.cpu_count() or 1) // num_processes)
    cmd += ["--num_cpu_threads_per_process", str(threads), "-m", ENTRY_MODULE, *entry_args]
    env = dict(os.environ)
    if cpu:
        env.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="1")
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cotbridge.train.launch_entry", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="student dataset JSONL with prompt and completion")
    p.add_argument("--config", help="TrainConfig YAML")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument("--model", help="student: hub id, folder, .gguf or embedded name")
    p.add_argument("--output", help="output_dir")
    p.add_argument("--dev", help="dev examples JSONL (id, question, answer) scored during training")
    p.add_argument("--task", help="the task whose rules score --dev")
    p.add_argument("--stats", help=f"stats JSON path (default: <output_dir>/{STATS_FILE})")
    p.add_argument("--trainer", default="sft", choices=list(TRAINERS), help="sft or on_policy")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stats = train_from_files(
            a.data, a.config, a.sets, {"model": a.model, "output_dir": a.output}, a.dev, a.task, a.stats, a.trainer
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _is_main_process():
        print(
            f"trained {stats['global_step']} steps on {stats['examples']} examples in {stats['world_size']} "
            f"process(es)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
