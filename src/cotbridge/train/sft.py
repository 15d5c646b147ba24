"""Supervised fine-tuning of a student on prompt/completion examples with TRL's SFTTrainer.

Loss is on the completion only (TRL's default for prompt/completion data). Full fine-tuning or
LoRA (PEFT); checkpoints every epoch and resume from the last one; the same entry point runs under
``accelerate launch`` for several processes. After training, LoRA weights are merged so the
student in ``<output_dir>`` loads like any model folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    group_by_length: bool = True  # batches of similar length waste less compute on padding
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    save_strategy: str = "epoch"
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 5
    seed: int = 0
    report_to: list[str] | str = "none"
    dtype: str = "auto"
    output_dir: str = "runs/train/student"
    resume: bool = True  # continue from the last checkpoint in output_dir if there is one


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def build_trainer(cfg: TrainConfig, examples: list[dict[str, Any]], model: Any = None, tokenizer: Any = None,
                  callbacks: list[Any] | None = None) -> Any:
    """An SFTTrainer over ``examples`` (dicts with prompt and completion; other keys are dropped)."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cotbridge.backends.hf import load_model_and_tokenizer

    if not examples:
        raise UserError("no training examples: curation kept nothing (see the curation statistics)")
    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    tokenizer.padding_side = "right"  # training pads on the right; generation switches to left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    args = SFTConfig(
        output_dir=cfg.output_dir, learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random", lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, save_strategy=cfg.save_strategy, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps, seed=cfg.seed, report_to=cfg.report_to,
        completion_only_loss=True, bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=False,
    )
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config,
                      callbacks=callbacks)


def train_student(cfg: TrainConfig, examples: list[dict[str, Any]], model: Any = None, tokenizer: Any = None,
                  callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train (resuming if a checkpoint exists), save the merged student to ``output_dir``; return stats."""
    trainer = build_trainer(cfg, examples, model, tokenizer, callbacks)
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    final = trainer.model
    if cfg.lora:
        trainer.model.save_pretrained(Path(cfg.output_dir) / "adapter")
        final = trainer.model.merge_and_unload()
    if trainer.is_world_process_zero():
        final.save_pretrained(cfg.output_dir)
        trainer.processing_class.save_pretrained(cfg.output_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"global_step": trainer.state.global_step, "train_loss": result.training_loss, "losses": losses,
            "resumed_from": resume, "examples": len(examples)}
