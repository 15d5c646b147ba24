"""On-policy distillation from a served teacher: TRL's ``ServerDistillationTrainer`` asks an OpenAI-compatible
server (vLLM, or ``cotbridge serve`` over a local model) for the teacher's log-probs of each sequence the student
samples (``/v1/completions`` with token-id prompts and ``prompt_logprobs``), so the teacher never sits in this
process: an 8B teacher on its own GPU, a 135M student here.

TRL's trainer is on-policy only and, with a reverse-KL share (``beta`` > 0), compares the two distributions on
the teacher's top-1 token plus a tail bucket; the pre-flight (train/preflight.py) checks the served log-probs
against the in-process teacher first.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from cotbridge.errors import UserError


@contextlib.contextmanager
def _http_only_vllm_client() -> Iterator[None]:
    """TRL's VLLMClient refuses to start without the vllm package, which only its weight-sync methods use; the
    teacher's log-probs are plain HTTP (requests). Without vllm installed, that one check is lifted while the
    trainer builds its client, so a teacher served elsewhere needs no vLLM here."""
    from trl.generation import vllm_client

    real = vllm_client.is_vllm_available
    vllm_client.is_vllm_available = lambda *a, **k: True
    try:
        yield
    finally:
        vllm_client.is_vllm_available = real


def build_served_teacher_trainer(cfg: Any, examples: list[dict[str, Any]], callbacks: list[Any] | None = None) -> Any:
    """A ServerDistillationTrainer over the prompts of ``examples``, graded by the teacher at ``cfg.teacher_url``."""
    from cotbridge.allocator import keep_freed_memory
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.config import lora_config, training_args_kwargs

    if cfg.lmbda < 1 or cfg.seq_kd:
        raise UserError(
            f"a served teacher (distill.teacher_url) grades the student's own samples only: set distill.lmbda=1 (is "
            f"{cfg.lmbda}) and distill.seq_kd=false, or use an in-process teacher (remove distill.teacher_url)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TRL's experimental-API warning, chosen knowingly
            from trl.experimental.server_distillation import ServerDistillationConfig, ServerDistillationTrainer
    except ImportError:
        import trl

        raise UserError(
            f"a served teacher needs TRL's ServerDistillationTrainer, which TRL {trl.__version__} lacks: "
            "pip install -U trl, or use an in-process teacher (remove distill.teacher_url)"
        ) from None
    from datasets import Dataset

    keep_freed_memory()
    if not examples:
        raise UserError("no training prompts for on-policy distillation (see the curation statistics)")
    model, tokenizer = load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        raise UserError(f"student {cfg.model} is an encoder-decoder model: on-policy distillation trains causal LMs")
    args = ServerDistillationConfig(
        **training_args_kwargs(cfg, model),
        teacher_model_server_url=cfg.teacher_url.rstrip("/").removesuffix("/v1"),
        beta=cfg.beta,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_new_tokens,
        loss_top_k=1,
    )
    with _http_only_vllm_client():
        try:
            trainer = ServerDistillationTrainer(
                model=model,
                args=args,
                train_dataset=Dataset.from_list([{"prompt": e["prompt"]} for e in examples]),
                processing_class=tokenizer,
                peft_config=lora_config(cfg, "CAUSAL_LM", model) if cfg.lora else None,
                callbacks=callbacks,
            )
        except ConnectionError as e:
            raise UserError(
                f"cannot reach the served teacher at {cfg.teacher_url} ({e}): start it (cotbridge serve MODEL, or "
                "vllm serve MODEL) or remove distill.teacher_url"
            ) from None
    trainer.truncation = {}
    return trainer


@contextlib.contextmanager
def teacher_faults_as_user_errors(cfg: Any, trainer: Any) -> Iterator[None]:
    """A teacher that stops answering mid-run (after TRL's client has retried 5 times, about a minute) ends the run
    with one line; the checkpoints saved so far stay, and the next run resumes from the last."""
    import requests

    try:
        yield
    except (requests.exceptions.RequestException, ConnectionError) as e:
        reason = f"{type(e).__name__}: {str(e)[:200]}"
    except Exception as e:
        if not str(e).startswith("Request failed"):  # VLLMClient's error for a non-200 answer
            raise
        reason = str(e)[:200]
    else:
        return
    raise UserError(
        f"the served teacher at {cfg.teacher_url} stopped answering at step {trainer.state.global_step} ({reason}); "
        f"start it again and rerun: training resumes from the last checkpoint in {cfg.output_dir} "
        f"(save_strategy={cfg.save_strategy})"
    ) from None
