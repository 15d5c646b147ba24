"""Supervised fine-tuning of a student on prompt/completion examples.

Decoder-only students train with TRL's SFTTrainer, loss on the completion only (TRL's default for
prompt/completion data); encoder-decoder students (T5 family) train with transformers'
Seq2SeqTrainer (see :mod:`cotbridge.train.seq2seq`). :func:`train_student` picks between them from
the model's config, so one entry point serves both. Full fine-tuning or LoRA (PEFT); checkpoints
every epoch and resume from the last one; optional dev accuracy every N epochs
(:mod:`cotbridge.train.callbacks`); the same entry point runs under ``accelerate launch`` for several
processes (:mod:`cotbridge.train.launch_entry`). After training, LoRA weights are merged so the
student in ``<output_dir>`` loads like any model folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from cotbridge.config import StrictModel
from cotbridge.errors import UserError

log = logging.getLogger(__name__)


class TrainConfig(StrictModel):
    model: str = "smollm2-135m-instruct"  # hub id, folder, .gguf, or an embedded model name
    gguf_file: str | None = None
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    lr: float = 3e-4  # Fine-tune-CoT's setting
    epochs: float = 20
    max_steps: int = -1
    batch_size: int = 8  # per process: under accelerate launch the global batch is this times the processes
    grad_accum: int = 1
    max_length: int = 512  # tokens; encoder-decoder students apply it to the input and the target separately
    group_by_length: bool = True  # batches of similar length waste less compute on padding
    gradient_checkpointing: bool = False  # TRL turns it on by default: ~30% more compute to save memory small students do not need
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    save_strategy: str = "epoch"
    save_steps: int = 500
    save_total_limit: int | None = 2  # rotation never removes the best dev checkpoint
    logging_steps: int = 5
    seed: int = 0
    report_to: list[str] | str = "none"
    dtype: str = "auto"
    # bf16 autocast: "auto" uses it on GPUs that support it and on CPUs with native bf16 instructions (avx512_bf16 /
    # AMX), where a training step of SmolLM2-135M takes half the time of fp32; "no" keeps fp32 everywhere.
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"
    output_dir: str = "runs/train/student"
    resume: bool = True  # continue from the last checkpoint in output_dir if there is one
    # Dev accuracy (only when train_student gets dev examples): greedy decoding in dev_mode, scored by the task's rules.
    dev_every_epochs: int = 1  # score every N epochs, and always after the last step
    dev_mode: str = "finetune_cot"  # prompt mode the student is evaluated in (see `cotbridge modes`)
    dev_max_tokens: int | None = None  # None: the prompt mode's default
    dev_batch_size: int = 16
    dev_select_best: bool = False  # save the best dev epoch's weights instead of the last epoch's


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware; elsewhere bf16 autocast is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: stay in fp32
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def use_bf16(mode: str) -> bool:
    import torch

    if mode != "auto":
        return mode == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def training_args_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """TrainingArguments fields shared by the decoder-only (SFTConfig) and encoder-decoder trainers."""
    import torch

    return dict(
        output_dir=cfg.output_dir, learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        # transformers 5: group_by_length became a sampling strategy; warmup_steps < 1 is a ratio.
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random", lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps, seed=cfg.seed,
        report_to=cfg.report_to, gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=use_bf16(cfg.mixed_precision),
        # use_cpu also makes a multi-process launch without GPUs use gloo on CPU.
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=False,
    )


def lora_config(cfg: TrainConfig, task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type=task_type)


def build_trainer(cfg: TrainConfig, examples: list[dict[str, Any]], model: Any = None, tokenizer: Any = None,
                  callbacks: list[Any] | None = None) -> Any:
    """A trainer over ``examples`` (dicts with prompt and completion; other keys are dropped).

    Encoder-decoder students get a Seq2SeqTrainer, decoder-only students TRL's SFTTrainer.
    """
    from cotbridge.allocator import keep_freed_memory
    from cotbridge.backends.hf import load_model_and_tokenizer

    keep_freed_memory()
    if not examples:
        raise UserError("no training examples: curation kept nothing (see the curation statistics)")
    if model is None:  # the loader picks the model class from the config (causal LM or seq2seq LM)
        model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        from cotbridge.train.seq2seq import build_seq2seq_trainer

        return grouped(cfg, build_seq2seq_trainer(cfg, examples, model, tokenizer, callbacks))
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer.padding_side = "right"  # training pads on the right; generation switches to left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    args = SFTConfig(**training_args_kwargs(cfg), max_length=cfg.max_length, completion_only_loss=True)
    peft_config = lora_config(cfg, "CAUSAL_LM") if cfg.lora else None
    return grouped(cfg, SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                   peft_config=peft_config, callbacks=callbacks))


def grouped(cfg: TrainConfig, trainer: Any) -> Any:
    """With group_by_length, batches come from the whole dataset sorted by length (see train/sampling.py)."""
    if cfg.group_by_length:
        from cotbridge.train.sampling import use_bucketed_sampler

        use_bucketed_sampler(trainer, cfg.seed)
    return trainer


def train_student(cfg: TrainConfig, examples: list[dict[str, Any]], model: Any = None, tokenizer: Any = None,
                  callbacks: list[Any] | None = None, dev_examples: list[Any] | None = None,
                  task: Any = None) -> dict[str, Any]:
    """Train (resuming if a checkpoint exists), save the merged student to ``output_dir``; return stats.

    ``dev_examples`` (task :class:`~cotbridge.tasks.base.Example` objects) with ``task`` (a Task or a task
    name, for its answer type and extraction rules) turn on greedy dev accuracy every
    ``cfg.dev_every_epochs`` epochs; the stats then hold the dev history and the best epoch. Safe under
    ``accelerate launch``: every process trains, only the main process writes the final model.
    """
    callbacks = list(callbacks or [])
    dev = None
    if dev_examples:
        from cotbridge.train.callbacks import DevAccuracyCallback

        if task is None:
            raise UserError("dev examples need a task: its answer type and extraction rules score the dev outputs")
        dev = DevAccuracyCallback(task, dev_examples, mode=cfg.dev_mode, every_epochs=cfg.dev_every_epochs,
                                  max_tokens=cfg.dev_max_tokens, batch_size=cfg.dev_batch_size)
        callbacks.append(dev)
    trainer = build_trainer(cfg, examples, model, tokenizer, callbacks)
    if dev is not None:
        dev.trainer = trainer  # so dev scores go through trainer.log like the loss does
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    stats: dict[str, Any] = {}
    if dev is not None:
        stats.update(dev.summary(trainer.state))
        if cfg.dev_select_best:
            stats["selected"] = load_best_dev_checkpoint(trainer)
    save_final(trainer, cfg)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"global_step": trainer.state.global_step, "train_loss": result.training_loss, "losses": losses,
            "resumed_from": resume, "examples": len(examples), "world_size": trainer.args.world_size, **stats}


def load_best_dev_checkpoint(trainer: Any) -> str | None:
    """Load the weights of the best dev checkpoint into the trainer's model; return its path (None: kept the last).

    The dev callback sets ``state.best_global_step``, which makes the Trainer record and keep
    ``best_model_checkpoint`` when it saves that step; a step without a checkpoint cannot be loaded.
    """
    state = trainer.state
    best = state.best_model_checkpoint
    if best is None or Path(best).name != f"checkpoint-{state.best_global_step}":
        log.warning("no checkpoint at the best dev step %s (save_strategy=%s); keeping the last weights",
                    state.best_global_step, trainer.args.save_strategy)
        return None
    trainer._load_best_model()  # handles full weights and LoRA adapters; the path load_best_model_at_end takes
    return best


def save_final(trainer: Any, cfg: TrainConfig) -> None:
    """Write the student (LoRA merged; the adapter too) from the main process; every process waits for it."""
    if trainer.is_world_process_zero():
        final = trainer.model
        if cfg.lora:
            trainer.model.save_pretrained(Path(cfg.output_dir) / "adapter")
            final = trainer.model.merge_and_unload()
        final.save_pretrained(cfg.output_dir)
        trainer.processing_class.save_pretrained(cfg.output_dir)
    # No process returns before the model is on disk: a caller on any rank may load it next.
    trainer.accelerator.wait_for_everyone()
