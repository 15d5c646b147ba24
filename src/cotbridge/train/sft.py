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
from typing import Any

from cotbridge.errors import UserError
from cotbridge.train.config import TrainConfig, last_checkpoint, lora_config, training_args_kwargs

log = logging.getLogger(__name__)


def build_trainer(
    cfg: TrainConfig,
    examples: list[dict[str, Any]],
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A trainer over ``examples`` (dicts with prompt and completion; other keys are dropped).

    Encoder-decoder students get a Seq2SeqTrainer, decoder-only students TRL's SFTTrainer.
    """
    from cotbridge.allocator import keep_freed_memory
    from cotbridge.models.loading import load_model_and_tokenizer

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
    return grouped(
        cfg,
        SFTTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        ),
    )


def grouped(cfg: TrainConfig, trainer: Any) -> Any:
    """With group_by_length, batches come from the whole dataset sorted by length (see train/sampling.py)."""
    if cfg.group_by_length:
        from cotbridge.train.sampling import use_bucketed_sampler

        use_bucketed_sampler(trainer, cfg.seed)
    return trainer


def train_student(
    cfg: TrainConfig,
    examples: list[dict[str, Any]],
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[Any] | None = None,
    dev_examples: list[Any] | None = None,
    task: Any = None,
) -> dict[str, Any]:
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
        dev = DevAccuracyCallback(
            task,
            dev_examples,
            mode=cfg.dev_mode,
            every_epochs=cfg.dev_every_epochs,
            max_tokens=cfg.dev_max_tokens,
            batch_size=cfg.dev_batch_size,
        )
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
    return {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "losses": losses,
        "resumed_from": resume,
        "examples": len(examples),
        "world_size": trainer.args.world_size,
        **stats,
    }


def load_best_dev_checkpoint(trainer: Any) -> str | None:
    """Load the weights of the best dev checkpoint into the trainer's model; return its path (None: kept the last).

    The dev callback sets ``state.best_global_step``, which makes the Trainer record and keep
    ``best_model_checkpoint`` when it saves that step; a step without a checkpoint cannot be loaded.
    """
    state = trainer.state
    best = state.best_model_checkpoint
    if best is None or Path(best).name != f"checkpoint-{state.best_global_step}":
        log.warning(
            "no checkpoint at the best dev step %s (save_strategy=%s); keeping the last weights",
            state.best_global_step,
            trainer.args.save_strategy,
        )
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
