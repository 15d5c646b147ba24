"""A student's training settings and what every trainer derives from them (precision, LoRA, TrainingArguments):
shared by the decoder-only SFT trainer (:mod:`.sft`), the encoder-decoder one (:mod:`.seq2seq`) and RL (:mod:`.rl`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from cotbridge.config import SEED_MAX, StrictModel
from cotbridge.models import loading

log = logging.getLogger(__name__)


class TrainConfig(StrictModel):
    model: str = "smollm2-135m-instruct"  # hub id, folder, .gguf, or an embedded model name
    gguf_file: str | None = None
    lora: bool = True
    lora_r: int = Field(default=8, ge=1)  # LoRA rank
    lora_alpha: int = Field(default=16, ge=1)
    # PEFT's default. Dropout draws a mask for every LoRA layer's input: on a CPU that was ~30% of a SmolLM2-135M
    # step (6.8 s -> 4.7 s at batch 8 without it).
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: list[str] | str = "all-linear"
    # LoRA on the top N transformer layers only (None: every layer). The layers below get no adapter and the embeddings
    # are frozen, so nothing below the lowest adapted layer needs a gradient: the backward pass stops there. A
    # decoder-only student's setting; N may not exceed the model's layer count.
    lora_layers: int | None = Field(default=None, ge=1)
    lr: float = Field(default=3e-4, gt=0, le=1)  # Fine-tune-CoT's setting
    epochs: float = Field(default=20, gt=0)
    max_steps: int = Field(default=-1, ge=-1)  # N > 0: stop after N optimizer steps; -1 (or 0): epochs decide
    # Rows per step and process (under accelerate launch the global batch is this times the processes). "auto": 8 on
    # a CPU; on a GPU the largest power of two up to 64 that its free memory holds (train/batch_fit.py).
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    grad_accum: int = Field(default=1, ge=1)  # batches whose gradients add up to one optimizer step
    # tokens; encoder-decoder students apply it to the input and the target separately
    max_length: int = Field(default=512, ge=1)
    group_by_length: bool = True  # batches of similar length waste less compute on padding
    # Pack several examples into each max_length row (TRL's best-fit packing, padding-free), so a batch holds tokens
    # instead of padding. Packed examples stay apart: transformers reads the restarting position_ids as a
    # block-diagonal mask (tests/test_train.py checks it). "auto": on with a GPU, where padding wastes most of a
    # step; off on a CPU, where the published quickstart settings were tuned on padded batches, and where packed
    # 1024-token rows of reasoning traces took 2.3x the time per token of padded batches (SmolLM2, 8 rows: attention
    # over whole packed rows instead of each example).
    packing: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = (
        False  # TRL turns it on by default: ~30% more compute to save memory small students do not need
    )
    lr_scheduler: str = "linear"
    # the fraction of steps the learning rate warms up over (transformers reads warmup_steps < 1 as a ratio, 1 as a
    # step: hence below 1)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    save_strategy: str = "epoch"
    save_steps: int = Field(default=500, ge=1)  # save_strategy steps: every N steps
    # checkpoints kept (None: all); rotation never removes the best dev checkpoint
    save_total_limit: int | None = Field(default=2, ge=1)
    logging_steps: int = Field(default=5, ge=1)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    report_to: list[str] | str = "none"
    dtype: str = "auto"
    # bf16 autocast: "auto" uses it on GPUs that support it and on CPUs with native bf16 instructions (avx512_bf16 /
    # AMX), where a training step of SmolLM2-135M takes half the time of fp32; "no" keeps fp32 everywhere.
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"
    output_dir: str = "runs/train/student"
    resume: bool = True  # continue from the last checkpoint in output_dir if there is one
    # Dev accuracy (only when train_student gets dev examples): greedy decoding in dev_mode, scored by the task's
    # rules.
    dev_every_epochs: int = Field(default=1, ge=1)  # score every N epochs, and always after the last step
    dev_mode: str = "finetune_cot"  # prompt mode the student is evaluated in (the --mode choices of `cotbridge eval`)
    dev_max_tokens: int | None = Field(default=None, ge=1)  # None: the prompt mode's default
    dev_batch_size: int = Field(default=16, ge=1)
    dev_select_best: bool = False  # save the best dev epoch's weights instead of the last epoch's


def last_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def use_bf16(mode: str) -> bool:
    import torch

    if mode != "auto":
        return mode == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return loading.cpu_has_native_bf16()


def use_packing(cfg: TrainConfig) -> bool:
    import torch

    return torch.cuda.is_available() if cfg.packing == "auto" else bool(cfg.packing)


def checkpointing_kwargs(enabled: bool) -> dict[str, bool]:
    """The TrainingArguments switch for activation (gradient) checkpointing, under this transformers' name.

    transformers 5.23 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name warns and goes
    in v6); earlier 5.x reject the new name.
    """
    import dataclasses

    from transformers import TrainingArguments

    new = any(f.name == "activation_checkpointing" for f in dataclasses.fields(TrainingArguments))
    return {"activation_checkpointing" if new else "gradient_checkpointing": enabled}


def training_args_kwargs(cfg: TrainConfig, model: Any) -> dict[str, Any]:
    """TrainingArguments fields shared by the decoder-only (SFTConfig) and encoder-decoder trainers, for ``model``
    (on the device it trains on: "auto" batches are sized from its memory)."""
    import torch

    from cotbridge.train.batch_fit import retries_on_oom, train_batch_size

    bf16 = use_bf16(cfg.mixed_precision)
    return dict(
        output_dir=cfg.output_dir,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=train_batch_size(cfg, model, bf16),
        auto_find_batch_size=retries_on_oom(cfg, model),
        gradient_accumulation_steps=cfg.grad_accum,
        # transformers 5: group_by_length became a sampling strategy; warmup_steps < 1 is a ratio.
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        report_to=cfg.report_to,
        **checkpointing_kwargs(cfg.gradient_checkpointing),
        bf16=bf16,
        # use_cpu also makes a multi-process launch without GPUs use gloo on CPU.
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def lora_config(cfg: TrainConfig, task_type: str, model: Any) -> Any:
    """PEFT's LoraConfig for ``model`` (which ``cfg.lora_layers`` is counted against)."""
    from peft import LoraConfig

    targets: list[str] | str = cfg.lora_target_modules
    layers = None
    if cfg.lora_layers is not None:
        targets, layers = top_layers(cfg, model)
    check_targets(targets, model)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type=task_type,
    )


def check_targets(targets: list[str] | str, model: Any) -> None:
    """Refuse target modules that match none of the model's modules, as PEFT matches them (a list: names that end a
    module's dotted name; a string other than "all-linear": a regular expression over whole names), naming the
    model's linear layers; PEFT would raise a long error of its own."""
    import re

    import torch

    from cotbridge.errors import UserError

    if targets == "all-linear" or model is None:
        return
    names = [n for n, _ in model.named_modules() if n]
    if isinstance(targets, str):
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:  # PEFT fails only when none matches: a list shared by model families (o_proj, out_proj) is fine
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        missing = missing if len(missing) == len(targets) else []
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise UserError(
            f"lora_target_modules: {', '.join(map(repr, missing))} matches no module of {type(model).__name__} "
            f"(its linear layers: {', '.join(linear)}; or all-linear)"
        )


def top_layers(cfg: TrainConfig, model: Any) -> tuple[list[str], list[int]]:
    """(target module names, layer indexes) that put LoRA on the top ``cfg.lora_layers`` layers of ``model``.

    PEFT takes a layer selection only with target modules given by name, so "all-linear" becomes the names of the
    model's linear layers (the output head left out, as PEFT does).
    """
    import torch

    from cotbridge.errors import UserError

    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"lora_layers: {cfg.model} is an encoder-decoder model; it applies to decoder-only students")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    total = getattr(text, "num_hidden_layers", None)
    if not isinstance(total, int):
        raise UserError(f"lora_layers: {cfg.model}'s config states no num_hidden_layers to count the top layers from")
    if cfg.lora_layers > total:  # type: ignore[operator]
        raise UserError(
            f"lora_layers={cfg.lora_layers}: {cfg.model} has {total} layers, so it must be between 1 and {total}"
        )
    targets = cfg.lora_target_modules
    if isinstance(targets, str):
        if targets.lower() != "all-linear":
            raise UserError(
                "lora_layers needs lora_target_modules as a list of module names or all-linear, not a pattern: "
                f"{targets!r}"
            )
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        targets = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and module is not head
            }
        )
    return list(targets), list(range(total - cfg.lora_layers, total))  # type: ignore[operator]
