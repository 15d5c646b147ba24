"""Encoder-decoder students (T5 family): transformers' Seq2SeqTrainer on question -> rationale pairs.

Fine-tune-CoT's encoder-decoder format (PAPERS.md): encoder input ``{question}``, decoder target
``{rationale} --> {answer}`` + EOS. Our student examples are written for decoder-only students
(``{question} ###`` -> `` {rationale} --> {answer}``), so the prompt loses the `` ###`` suffix and the
completion its leading space; the decoder-only separator has no job in an encoder-decoder, where the
target is a separate sequence. The loss covers the target only by construction (labels are the target,
padded with -100). Full fine-tuning or LoRA (``SEQ_2_SEQ_LM``), checkpoints and resume come from the
shared Trainer machinery; :func:`cotbridge.train.sft.train_student` dispatches here on
``config.is_encoder_decoder``.

This module imports nothing heavy at load time: the generation backend imports :func:`encoder_input`
from here so evaluation feeds the encoder exactly what training fed it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cotbridge.errors import UserError
from cotbridge.models.student_io import encoder_input

if TYPE_CHECKING:
    from cotbridge.train.config import TrainConfig

log = logging.getLogger(__name__)


def to_seq2seq_pair(example: dict[str, Any]) -> dict[str, str]:
    """``{"source", "target"}`` from a prompt/completion example (or one that already has source/target)."""
    if "source" in example and "target" in example:
        return {"source": str(example["source"]), "target": str(example["target"])}
    prompt, completion = example.get("prompt"), example.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise UserError(
            "encoder-decoder students train on plain prompt/completion text (formats finetune_cot, "
            "vanilla, natural); the chat format is for decoder-only chat models"
        )
    return {"source": encoder_input(prompt), "target": completion.strip()}


def tokenize_pairs(pairs: list[dict[str, str]], tokenizer: Any, max_length: int) -> Any:
    """A datasets.Dataset of input_ids / attention_mask / labels (unpadded; the collator pads).

    The tokenizer's own special tokens are kept (T5 appends ``</s>`` to both sides, as in pre-training);
    a target without a final EOS gets one, so the student learns to stop.
    """
    from datasets import Dataset

    eos = tokenizer.eos_token_id
    src = tokenizer([p["source"] for p in pairs], truncation=True, max_length=max_length)
    tgt = tokenizer(text_target=[p["target"] for p in pairs], truncation=True, max_length=max_length)
    labels = []
    for ids in tgt["input_ids"]:
        if eos is not None and (not ids or ids[-1] != eos):
            ids = ids[: max_length - 1] + [eos]
        labels.append(ids)
    return Dataset.from_dict(
        {"input_ids": src["input_ids"], "attention_mask": src["attention_mask"], "labels": labels}
    )


def check_decoder_start(model: Any) -> None:
    """Generation and label shifting both need a decoder start token; T5 uses the pad token."""
    if getattr(model.config, "decoder_start_token_id", None) is None:
        raise UserError(
            f"{type(model).__name__} has no decoder_start_token_id in its config "
            "(T5 models use the pad token id); set it before training"
        )


def build_seq2seq_trainer(
    cfg: TrainConfig,
    examples: list[dict[str, Any]],
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A Seq2SeqTrainer over ``examples`` (prompt/completion or source/target dicts; other keys are dropped)."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.config import lora_config, training_args_kwargs

    if not examples:
        raise UserError("no training examples: curation kept nothing (see the curation statistics)")
    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    check_decoder_start(model)
    tokenizer.padding_side = "right"  # the encoder is bidirectional; right padding is what T5 was trained with
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = tokenize_pairs([to_seq2seq_pair(e) for e in examples], tokenizer, cfg.max_length)
    # remove_unused_columns would inspect the forward signature, which a PEFT wrapper hides behind **kwargs;
    # the dataset holds only model inputs anyway.
    args = Seq2SeqTrainingArguments(**training_args_kwargs(cfg, model), remove_unused_columns=False)
    # With the model, the collator also builds decoder_input_ids (labels shifted right after the start token).
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg, "SEQ_2_SEQ_LM", model))
    return Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
