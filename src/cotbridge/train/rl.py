"""RL refinement of the rationale writer (LM-guided CoT, step 2) with TRL's GRPO or RLOO.

The small model writes a rationale; the reward is ``w_task * task + Σ w_aspect * aspect``: ``task`` is
the frozen large model's EM or F1 when it answers with that rationale, each aspect score comes from a
rationale-quality scorer (:mod:`cotbridge.quality.scorers`). Every weighted component is its own reward
callable, so TRL logs each one's mean per step (``rewards/<name>/mean``) beside the weighted total
(``reward``) and the KL to the reference model; ``beta`` weights that KL penalty, and the reference is
the model RL starts from (the distilled writer). TRL's trainers create policies with
``AutoModelForCausalLM``: encoder-decoder writers (T5) are not supported here, decoder-only ones are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cotbridge.allocator import keep_freed_memory
from cotbridge.config import SEED_MAX, TEMPERATURE_MAX, StrictModel
from cotbridge.errors import UserError
from cotbridge.fileio import save_pretrained_staged
from cotbridge.registry import Registry
from cotbridge.train.config import checkpointing_kwargs, use_bf16

log = logging.getLogger(__name__)
RewardFunc = Callable[..., list[float]]
# name -> (config class, trainer class) in trl; both take reward callables.
ALGORITHMS: Registry[tuple[str, str]] = Registry("RL algorithm")
ALGORITHMS.add("grpo", ("GRPOConfig", "GRPOTrainer"))
ALGORITHMS.add("rloo", ("RLOOConfig", "RLOOTrainer"))


class RLConfig(StrictModel):
    algorithm: str = "grpo"
    # Reward settings, read by whoever builds the reward callables (LM-guided CoT: recipes/lm_guided/rewards.py);
    # weights of "task" (the large model's EM/F1 given the rationale) and of rationale-quality aspects.
    weights: dict[str, float] = {"task": 1.0, "fluency": 0.5, "relevance": 0.5}
    task_metric: Literal["f1", "em"] = "f1"
    aspect_scorers: dict[str, str] = {}  # aspect -> scorer name; unset aspects use DEFAULT_ASPECT_SCORERS, else judge
    scorer_options: dict[str, dict[str, Any]] = {}  # scorer name -> constructor options (e.g. judge backend)
    lr: float = Field(default=1e-4, gt=0, le=1)
    steps: int = Field(default=40, ge=1)
    batch_size: int = Field(default=8, ge=1)  # completions per step; prompts per step = batch_size / num_generations
    num_generations: int = Field(default=4, ge=2)  # completions per prompt: the group advantages compare (2 or more)
    beta: float = Field(default=0.04, ge=0)  # KL penalty towards the reference (the distilled model)
    temperature: float = Field(default=1.0, gt=0, le=TEMPERATURE_MAX)  # sampling temperature of the completions
    max_completion_length: int = Field(default=48, ge=1)
    train_limit: int | None = Field(default=None, ge=1)  # training questions per task used as RL prompts
    lora: bool = False
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    logging_steps: int = Field(default=1, ge=1)
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"  # as TrainConfig: bf16 autocast where the hardware has it
    output_dir: str = "runs/rl/writer"


def combine(components: dict[str, list[float]], weights: dict[str, float]) -> list[float]:
    """The total reward per completion: Σ weight × component (what the trainer optimises)."""
    names = list(components)
    return [sum(weights[n] * components[n][i] for n in names) for i in range(len(components[names[0]]))]


class RewardLog:
    """A TrainerCallback that keeps every logged step's reward components, KL and loss (and appends them to JSONL)."""

    def __init__(self, path: str | Path | None = None):
        from transformers import TrainerCallback

        self.rows: list[dict[str, Any]] = []
        self.path = Path(path) if path else None
        outer = self

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 (transformers' signature)
                if logs and "reward" in logs:
                    row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
                    outer.rows.append(row)
                    if outer.path is not None:
                        import json

                        outer.path.parent.mkdir(parents=True, exist_ok=True)
                        with outer.path.open("a", encoding="utf-8") as f:
                            f.write(json.dumps(row) + "\n")

        self.callback = _CB()


def check_decoder_only(model_path: str | Path) -> None:
    from transformers import AutoConfig

    if getattr(AutoConfig.from_pretrained(str(model_path)), "is_encoder_decoder", False):
        raise UserError(
            f"{model_path} is an encoder-decoder model; TRL's GRPO/RLOO train decoder-only policies only "
            "(use a decoder-only rationale writer for RL)"
        )


def train_rl(
    cfg: RLConfig,
    model_path: str | Path,
    prompts: list[dict[str, Any]],
    reward_funcs: list[RewardFunc],
    weights: list[float],
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train the writer in ``model_path`` (decoder-only, HF folder) on ``prompts`` (dicts with ``prompt`` and
    ``example_key``); save it to ``cfg.output_dir``; return the per-step reward log and whether weights changed."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    check_decoder_only(model_path)
    keep_freed_memory()
    if cfg.batch_size % cfg.num_generations:
        raise UserError(
            f"rl.batch_size ({cfg.batch_size}) must be a multiple of rl.num_generations ({cfg.num_generations})"
        )
    config_cls, trainer_cls = (getattr(trl, n) for n in ALGORITHMS.get(cfg.algorithm))
    out = Path(cfg.output_dir)
    rlog = RewardLog(out / "reward_log.jsonl")
    (out / "reward_log.jsonl").unlink(missing_ok=True)  # a rerun starts a fresh log
    args = config_cls(
        output_dir=str(out),
        learning_rate=cfg.lr,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        num_generations=cfg.num_generations,
        beta=cfg.beta,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_completion_length,
        reward_weights=weights,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(cfg.mixed_precision),
        **checkpointing_kwargs(False),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    tok = AutoTokenizer.from_pretrained(str(model_path), padding_side="left")
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    data = Dataset.from_list([{"prompt": p["prompt"], "example_key": p["example_key"]} for p in prompts])
    trainer = trainer_cls(
        model=str(model_path),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=data,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[rlog.callback, *(callbacks or [])],
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters() if n in before)
    final = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    save_pretrained_staged(out, final, tok)
    names = [f.__name__ for f in reward_funcs]
    return {
        "trainer": type(trainer).__name__,
        "steps": trainer.state.global_step,
        "log": rlog.rows,
        "components": names,
        "weights": dict(zip(names, weights)),
        "changed_tensors": int(changed),
        "trainable_tensors": len(before),
        "finite": all(math.isfinite(r.get(f"rewards/{n}/mean", 0.0)) for r in rlog.rows for n in names),
    }


def window_means(values: list[float], share: float = 0.2) -> tuple[float, float]:
    """(mean of the first ``share`` of values, mean of the last ``share``) — how a reward curve moved."""
    if not values:
        return float("nan"), float("nan")
    n = max(1, round(len(values) * share))
    return sum(values[:n]) / n, sum(values[-n:]) / n
