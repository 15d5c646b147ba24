"""On-policy distillation of a causal student toward a frozen teacher (GKD: Agarwal et al. 2024, "On-Policy
Distillation of Language Models"), with TRL's ``GKDTrainer``; the loss is TRL's.

Each step, with probability ``lmbda``, the student samples completions for the batch's prompts and is moved toward
the teacher's next-token distribution at every token it wrote; otherwise it trains on the dataset's completions
(with ``seq_kd``, on completions the teacher samples). ``beta`` picks the divergence: 0 forward KL, 0.5 JSD, 1
reverse KL. GKDTrainer rather than TRL's stable ``DistillationTrainer``: that one is on-policy only (no ``lmbda``, no
``seq_kd``), so SFT-like and mixed schedules would need a second trainer.

Around the trainer, what :mod:`cotbridge.train.sft` does for SFT: precision and LoRA from the TrainConfig keys, the
output folder locked and fingerprinted (a resume on other data or settings is refused), checkpoints resumed, LoRA
merged into the saved student, the same stats. The teacher is any model :mod:`cotbridge.models.loading` reads
(hub id, folder, GGUF, the embedded short name), frozen, in bf16 or fp32.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Literal

from pydantic import Field

from cotbridge.config import TEMPERATURE_MAX
from cotbridge.errors import UserError
from cotbridge.train.config import TrainConfig, last_checkpoint, lora_config, training_args_kwargs
from cotbridge.train.frozen_weights import frozen_weights_cast_once

log = logging.getLogger(__name__)


class OnPolicyConfig(TrainConfig):
    teacher: str = (
        "smollm2-135m-instruct"  # hub id, folder, .gguf or embedded name; must share the student's tokenizer
    )
    teacher_gguf_file: str | None = None
    # The teacher only runs forward passes: "auto" is bf16 on a GPU and on CPUs with native bf16, else fp32.
    teacher_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    lmbda: float = Field(default=1.0, ge=0, le=1)  # fraction of steps on the student's own samples (1: on-policy only)
    beta: float = Field(default=1.0, ge=0, le=1)  # 0 forward KL, 0.5 JSD, 1 reverse KL (mode-seeking, as in Tinker)
    seq_kd: bool = False  # steps not on the student's samples train on the teacher's samples, not the dataset's
    temperature: float = Field(
        default=0.9, gt=0, le=TEMPERATURE_MAX
    )  # sampling temperature of the student's (and seq_kd teacher's) samples
    max_new_tokens: int = Field(default=128, ge=1)  # length of each sampled completion
    # An OpenAI-compatible server of the teacher (vLLM, cotbridge serve: http://host:port/v1) that grades the
    # student's samples with prompt_logprobs, instead of a copy in this process (TRL's ServerDistillationTrainer:
    # top-1 support, on-policy only). The pre-flight compares it with the in-process teacher once.
    teacher_url: str | None = None
    served_tolerance: float = Field(default=0.1, gt=0)  # pre-flight: mean nats a token the served teacher may differ
    lr: float = Field(default=1e-4, gt=0, le=1)
    epochs: float = Field(default=1, gt=0)  # every step samples: an epoch costs far more than an SFT epoch
    # GKD generates from each batch's prompts: packed rows and length-sorted batches have no place here.
    packing: Literal[False] = False
    group_by_length: Literal[False] = False
    output_dir: str = "runs/train/on_policy"


def load_teacher(cfg: OnPolicyConfig) -> tuple[Any, Any]:
    """The teacher, frozen (eval mode, no gradients), on the device the student trains on, and its tokenizer."""
    import torch

    from cotbridge.models.loading import load_model_and_tokenizer

    try:
        teacher, tokenizer = load_model_and_tokenizer(
            cfg.teacher, cfg.teacher_gguf_file, cfg.teacher_dtype, generation=True
        )
    except (torch.OutOfMemoryError, MemoryError) as e:
        raise UserError(
            f"the teacher {cfg.teacher} does not fit in memory beside the student ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'}): load it in bfloat16 "
            "(distill.teacher_dtype), serve it on another device (distill.teacher_url), or use a smaller teacher"
        ) from None
    if getattr(teacher.config, "is_encoder_decoder", False):
        raise UserError(f"teacher {cfg.teacher} is an encoder-decoder model: on-policy distillation needs a causal LM")
    teacher.requires_grad_(False)
    # TRL's loss subtracts the two models' log-probs: a bf16 teacher's logits are widened to fp32 first, so the
    # student is not pulled toward bf16 rounding of the teacher's distribution.
    teacher.register_forward_hook(lambda _module, _args, out: out.__setitem__("logits", out["logits"].float()))
    return teacher.eval(), tokenizer


def check_pair(cfg: OnPolicyConfig, chat: bool = False, top_k: int = 20) -> list[dict[str, str]]:
    """The pre-flight checks (:mod:`cotbridge.train.preflight`) on the student ``cfg.model`` and its teacher: a list
    of passed and skipped checks, or one line (UserError) naming what differs and what to do."""
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.preflight import preflight

    student = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    return preflight(
        student,
        load_teacher(cfg),
        chat=chat,
        top_k=top_k,
        served_url=api_base(cfg.teacher_url) if cfg.teacher_url else None,
        served_tolerance=cfg.served_tolerance,
    )


def api_base(url: str) -> str:
    """``url`` ending in /v1, as the openai SDK takes it (TRL's VLLMClient takes it without)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def tokenized(example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
    """One row as GKD's collator reads it pre-tokenized: the prompt as text (kept for TRL), the token ids and which of
    them are the completion. Chat examples are rendered through the student's chat template; a text completion ends
    with EOS, as SFT trains it, so the student learns where to stop; an empty completion (prompts only, for
    on-policy steps) has none."""
    prompt, completion = example["prompt"], example.get("completion") or ""
    chat = isinstance(prompt, list)
    if chat:
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(prompt + list(completion), tokenize=False) if completion else head
        prompt, completion = head, whole[len(head) :] if whole.startswith(head) else whole
    # No special tokens added: the hf backend encodes prompts so when it evaluates the student, and a chat template
    # writes its own.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
    if completion_ids and not chat and completion_ids[-1] != tokenizer.eos_token_id:
        completion_ids.append(tokenizer.eos_token_id)
    mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    return {
        "prompt": prompt,
        "input_ids": (prompt_ids + completion_ids)[:max_length],
        "completion_mask": mask[:max_length],
    }


def build_on_policy_trainer(cfg: OnPolicyConfig, examples: list[dict[str, Any]], callbacks: list[Any] | None = None):
    """A GKDTrainer over ``examples`` (prompt, optional completion); the teacher is loaded first, so that a GPU batch
    of "auto" is sized from the memory the teacher leaves. With ``teacher_url``, TRL's ServerDistillationTrainer."""
    import warnings

    if cfg.teacher_url:
        from cotbridge.train.served_teacher import build_served_teacher_trainer

        return build_served_teacher_trainer(cfg, examples, callbacks)

    from datasets import Dataset

    with warnings.catch_warnings():  # chosen knowingly (see the module's docstring): no warning on every run
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDConfig, GKDTrainer

    from cotbridge.allocator import keep_freed_memory
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.sft import trainable_examples

    keep_freed_memory()
    if not examples:
        raise UserError("no training prompts for on-policy distillation (see the curation statistics)")
    teacher, _ = load_teacher(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        raise UserError(
            f"student {cfg.model} is an encoder-decoder model: on-policy distillation trains causal students only; "
            "use the SFT recipe (cotbridge run)"
        )
    examples, truncation = trainable_examples(
        [{**e, "completion": e.get("completion") or ""} for e in examples], tokenizer, cfg.max_length
    )
    data = Dataset.from_list([tokenized(e, tokenizer, cfg.max_length) for e in examples])
    args = GKDConfig(
        **training_args_kwargs(cfg, model),
        max_length=cfg.max_length,
        lmbda=cfg.lmbda,
        beta=cfg.beta,
        seq_kd=cfg.seq_kd,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
    )
    trainer = GKDTrainer(
        model=model,
        teacher_model=teacher,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=lora_config(cfg, "CAUSAL_LM", model) if cfg.lora else None,
        callbacks=callbacks,
    )
    # The Trainer counts the loss's token denominator from the dataset's completion labels, before GKD swaps in the
    # student's samples: the wrong count on every on-policy step, and zero for prompt-only rows (an infinite loss,
    # NaN weights). Without it, GKD's loss averages over the tokens each step actually trains on.
    trainer.model_accepts_loss_kwargs = False
    trainer.truncation = truncation
    return trainer


def train_on_policy(
    cfg: OnPolicyConfig, examples: list[dict[str, Any]], callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Distil (resuming the last checkpoint in ``output_dir`` if there is one), save the merged student there and
    return the stats. ``examples``: dicts with ``prompt`` (text or chat messages) and, for the steps that are not
    on the student's samples, ``completion``."""
    from cotbridge.train.sft import training_folder

    if cfg.lmbda < 1 and not cfg.seq_kd and not any(e.get("completion") for e in examples):
        raise UserError(
            f"lmbda={cfg.lmbda} trains {1 - cfg.lmbda:.0%} of steps on the data's completions, and these examples "
            "have none: give completions (teacher rationales), set lmbda=1, or seq_kd=true"
        )
    with training_folder(cfg, examples):
        return _train(cfg, examples, callbacks)


def _train(cfg: OnPolicyConfig, examples: list[dict[str, Any]], callbacks: list[Any] | None) -> dict[str, Any]:
    from cotbridge.train.sft import save_final

    trainer = build_on_policy_trainer(cfg, examples, callbacks)
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    if resume:
        log.info("resuming from %s", resume)
    with contextlib.ExitStack() as stack:
        stack.enter_context(frozen_weights_cast_once(trainer.model, trainer.args.bf16))
        if cfg.teacher_url:
            from cotbridge.train.served_teacher import teacher_faults_as_user_errors

            stack.enter_context(teacher_faults_as_user_errors(cfg, trainer))
        result = trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, cfg)
    history = trainer.state.log_history
    return {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "losses": [h["loss"] for h in history if "loss" in h],
        "resumed_from": resume,
        "examples": len(examples),
        **{f"examples_{k}": v for k, v in trainer.truncation.items()},
        "world_size": trainer.args.world_size,
        "batch_size": trainer.state.train_batch_size,
        "teacher": cfg.teacher_url or cfg.teacher,
        "lmbda": cfg.lmbda,
        "beta": cfg.beta,
    }
