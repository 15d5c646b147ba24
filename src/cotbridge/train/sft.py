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

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cotbridge.errors import UserError
from cotbridge.fileio import as_os_error, remove_tree, staged
from cotbridge.folder_lock import folder_lock
from cotbridge.jsonl import read_json, write_json, write_jsonl
from cotbridge.models.loading import base_record, record_pooled_base
from cotbridge.run_record import refuse_if_changed
from cotbridge.train.config import TrainConfig, last_checkpoint, lora_config, training_args_kwargs, use_packing
from cotbridge.train.frozen_weights import frozen_weights_cast_once

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
    examples, truncation = trainable_examples(examples, tokenizer, cfg.max_length)
    data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    packing = {"packing": True, "padding_free": True} if use_packing(cfg) else {}
    args = SFTConfig(
        **training_args_kwargs(cfg, model), max_length=cfg.max_length, completion_only_loss=True, **packing
    )
    peft_config = lora_config(cfg, "CAUSAL_LM", model) if cfg.lora else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.truncation = truncation  # reported in train_student's stats
    return grouped(cfg, trainer)


@contextmanager
def scoring_completion_tokens_only() -> Iterator[None]:
    """Within: TRL's fused LM-head loss scores only the positions with labels on a CPU, as it does on GPUs, and
    computes their log-probabilities with :class:`~cotbridge.train.label_logprobs.LabelLogProbs`.

    Off Triton devices TRL projects every position (prompt and padding too) onto the vocabulary, so that shapes stay
    fixed for compilers such as Neuron's; eager CPU training gains nothing from that and pays for the full
    [tokens, vocab] projection forward and backward (~10% of a quickstart step). Its vocabulary tiles are then folded
    in fp32 torch ops, ~40% of the rest (see label_logprobs.py). The loss is the same: ignored positions are zeroed
    either way (tests/test_train.py compares both, and LabelLogProbs against TRL's function). The private names are
    restored on exit; without them (another TRL version) nothing changes.
    """
    import trl.trainer.utils as trl_utils

    from cotbridge.train.label_logprobs import LabelLogProbs

    scores_compactly = getattr(trl_utils, "_use_triton", None)
    chunked = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if scores_compactly is None or chunked is None:
        yield
        return

    def compact_on_cpu(device: Any) -> bool:
        return device.type == "cpu" or scores_compactly(device)

    class LogProbsByDevice:
        @staticmethod
        def apply(hidden: Any, *args: Any) -> Any:
            return (LabelLogProbs if hidden.device.type == "cpu" else chunked).apply(hidden, *args)

    trl_utils._use_triton, trl_utils._ChunkedLogProbFunction = compact_on_cpu, LogProbsByDevice
    try:
        yield
    finally:
        trl_utils._use_triton, trl_utils._ChunkedLogProbFunction = scores_compactly, chunked


def trainable_examples(
    examples: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(the rows worth training on, how many were dropped or cut short): rows whose prompt fills ``max_length`` are
    dropped (the loss is on the completion only: they would train nothing); data in which no row has a trainable
    token is refused."""
    untrainable = truncated = 0
    kept = []
    for e in examples:
        prompt, completion = token_counts(tokenizer, e["prompt"], e["completion"])
        if prompt >= max_length:
            untrainable += 1
            continue
        truncated += prompt + completion > max_length
        kept.append(e)
    if not kept:
        raise UserError(
            f"no trainable token: the prompts of all {len(examples)} examples fill max_length={max_length} tokens; "
            "raise it (--set max_length=...) or shorten the prompts"
        )
    if untrainable or truncated:
        log.warning(
            "%d of %d examples dropped (prompt alone fills max_length=%d), %d more cut short at max_length",
            untrainable,
            len(examples),
            max_length,
            truncated,
        )
    return kept, {"untrainable": untrainable, "truncated": truncated}


def token_counts(tokenizer: Any, prompt: Any, completion: Any) -> tuple[int, int]:
    """Prompt and completion lengths in tokens, for text or (conversational examples) chat messages."""
    if isinstance(prompt, list):  # messages: measured through the chat template, as the trainer renders them
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(prompt + list(completion), tokenize=False)
        prompt, completion = head, whole[len(head) :] if whole.startswith(head) else whole
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return count(prompt), count(completion)


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
    with training_folder(cfg, examples):
        return _train(cfg, examples, model, tokenizer, callbacks, dev)


TRAINED_ON = "training_prompts.jsonl"


def prompt_text(prompt: Any) -> str:
    """A prompt as text: chat prompts by their user turns."""
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict) and m.get("role") == "user")
    return str(prompt or "")


def training_fingerprint(cfg: TrainConfig, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """What a checkpoint in ``output_dir`` was trained from: resuming it on other data or settings would mix runs."""
    data = hashlib.sha256(json.dumps(examples, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    settings = cfg.model_dump(mode="json", exclude={"output_dir", "resume", "logging_steps", "report_to"})
    return {"examples": len(examples), "data_sha256": data, "config": settings}


@contextmanager
def training_folder(cfg: TrainConfig, examples: list[dict[str, Any]]) -> Iterator[None]:
    """Lock ``output_dir`` (main process) and refuse to resume checkpoints another training run left there."""
    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch the main process guards the folder
        yield
        return
    out = Path(cfg.output_dir)
    with folder_lock(out, "--output"):
        for partial in incomplete_checkpoints(out):  # a save cut short (a full disk, a kill): never resumed from
            log.warning("%s: removing a checkpoint whose save did not finish", partial)
            remove_tree(partial)
        marker, new = out / "training.json", training_fingerprint(cfg, examples)
        if cfg.resume and last_checkpoint(out):
            refuse_if_changed(
                read_json(marker) if marker.exists() else None,
                new,
                holder=f"{out} holds checkpoints of another training run",
                remedy="choose another --output, or delete the folder to start over",
                cfg=cfg,
                prefix="config.",
            )
        write_json(marker, new)
        # What the student saw, so that `cotbridge eval` can warn when it is tested on questions it trained on.
        write_jsonl(out / TRAINED_ON, [{"prompt": prompt_text(e.get("prompt"))} for e in examples])
        try:
            yield
        except BaseException as e:
            for partial in incomplete_checkpoints(out):
                remove_tree(partial)
            failure = as_os_error(e, out) if isinstance(e, Exception) else None
            if failure is None or failure is e:
                raise
            raise failure from e  # safetensors' or torch's own error for a checkpoint that could not be written


def incomplete_checkpoints(out: Path) -> list[Path]:
    """Checkpoint folders whose save did not finish: the Trainer writes ``trainer_state.json`` last."""
    found = []
    for folder in sorted(out.glob("checkpoint-*")):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if folder.is_dir():
                found.append(folder)
    return found


EAGER_ATTENTION_BYTES = 2 * 2**30  # attention weights eager attention may keep for the backward pass, all layers


@contextmanager
def eager_attention_on_cpu(trainer: Any, cfg: TrainConfig) -> Iterator[None]:
    """Within: the model trains with eager attention on a CPU when the attention weights it keeps for the backward
    pass (batch x heads x longest row^2 x layers, fp32) fit in EAGER_ATTENTION_BYTES; SDPA is restored on exit.

    SDPA's CPU flash-attention backward took 15 ms a layer for 8 rows of ~150 tokens; eager attention's small matrix
    products cut a SmolLM2-135M quickstart step from 2.75 s to 2.36 s. Long rows (reasoning traces at 1024 tokens:
    ~9 GB of weights) keep SDPA, which stores none; so do GPUs and packed rows.
    """
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    c = base.config
    current = getattr(c, "_attn_implementation", None)
    data = trainer.train_dataset
    rows = data["input_ids"] if "input_ids" in (getattr(data, "column_names", None) or []) else []
    longest = min(cfg.max_length, max((len(r) for r in rows), default=cfg.max_length))
    weights = trainer.args.per_device_train_batch_size * c.num_attention_heads * longest**2 * 4 * c.num_hidden_layers
    if (
        current != "sdpa"
        or next(base.parameters()).device.type != "cpu"
        or use_packing(cfg)
        or weights > EAGER_ATTENTION_BYTES
        or not hasattr(base, "set_attn_implementation")
    ):
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(current)


def _train(
    cfg: TrainConfig, examples: list[dict[str, Any]], model: Any, tokenizer: Any, callbacks: list[Any], dev: Any
) -> dict[str, Any]:
    unshard_without_gpus()
    trainer = build_trainer(cfg, examples, model, tokenizer, callbacks)
    if dev is not None:
        dev.trainer = trainer  # so dev scores go through trainer.log like the loss does
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    if resume:
        log.info("resuming from %s", resume)
    with (
        scoring_completion_tokens_only(),
        eager_attention_on_cpu(trainer, cfg),
        frozen_weights_cast_once(trainer.model, trainer.args.bf16),
    ):
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
        **{f"examples_{k}": v for k, v in getattr(trainer, "truncation", {}).items()},
        "world_size": trainer.args.world_size,
        "sharding": sharding(trainer),
        "batch_size": trainer.state.train_batch_size,  # rows per step and process ("auto" resolved, shrunk on OOM)
        **stats,
    }


def sharding(trainer: Any) -> str:
    """How ``accelerate launch`` split the model: "fsdp" or "deepspeed" from its config file, else "none" (the
    weights replicated in each process, or one process)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return f"fsdp{getattr(trainer.accelerator.state.fsdp_plugin, 'fsdp_version', 1)}"
    return "deepspeed" if getattr(trainer, "is_deepspeed_enabled", False) else "none"


# accelerate launch --config_file sets these in each process when the config asks for a sharded model
SHARDING_REQUESTS = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def unshard_without_gpus() -> None:
    """When the accelerate config asks for FSDP or DeepSpeed and this process has no GPU (or similar device), drop
    the request, with one warning, so the processes run plain data parallelism. accelerate shards only over GPUs;
    what it does on CPUs depends on its version (1.4 refuses to build the Trainer, later ones fall back silently)."""
    asked = [name for var, name in SHARDING_REQUESTS.items() if os.environ.get(var, "").lower() == "true"]
    if not asked or _has_sharding_device():
        return
    for var in SHARDING_REQUESTS:
        os.environ.pop(var, None)
    if os.environ.get("RANK", "0") == "0":
        log.warning(
            "the accelerate config asks for %s, which accelerate runs only on GPUs: these %s CPU processes each hold "
            "the whole model (plain data parallelism)",
            asked[0],
            os.environ.get("WORLD_SIZE", "1"),
        )


def _has_sharding_device() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


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
        base = None
        with staged(cfg.output_dir) as stage:  # all files or none: a full disk keeps the previous student whole
            if cfg.lora:
                trainer.model.save_pretrained(stage / "adapter")
                base = getattr(trainer.model.get_base_model(), "cotbridge_base", None)
                final = trainer.model.merge_and_unload()
            final.save_pretrained(stage)
            trainer.processing_class.save_pretrained(stage)
        base_record(cfg.output_dir).unlink(missing_ok=True)  # written again below, for these merged weights
        if base is not None:  # a base from the run's model pool: later loads rebuild the student from it
            record_pooled_base(cfg.output_dir, base)
    # No process returns before the model is on disk: a caller on any rank may load it next.
    trainer.accelerator.wait_for_everyone()
