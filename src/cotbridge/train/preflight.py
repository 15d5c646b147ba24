"""Can this teacher grade this student token by token? The checks on-policy distillation needs before its first step.

Mismatched tokenizers are the most common silent failure of on-policy distillation: the loss compares the two
models' distributions over token ids, so a teacher whose ids mean other strings trains the student toward noise
without any error. Each check here either passes (with what it saw), is skipped (with why), or stops the run with
one line saying what differs and what to do (:class:`~cotbridge.errors.UserError`). Checked, in order:

1. the tokenizers: the same vocabulary (every token with the same id), the same split of a fixed text, the same
   end- and start-of-sequence tokens, and output layers of the same width (the number of logits);
2. the chat templates, where prompts go through one;
3. the teacher's log-probs on a fixed sequence: finite, a distribution, and at least ``top_k`` wide;
4. a served teacher (``distill.teacher_url``: vLLM or ``cotbridge serve``), asked as TRL's server distillation asks
   (the fixed text as token ids, ``prompt_logprobs``): it answers, at least ``top_k`` wide, with the actual token's
   log-prob at every position, on average within ``tolerance`` nats of the in-process teacher's. Skipped without
   a URL.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cotbridge.errors import UserError

# Mixed text, digits, code and non-ASCII, so that tokenizers that differ anywhere common are likely to differ here.
FIXED_TEXT = (
    "Q: A coin is heads up. Alice flips the coin; Bob does not. Is it still heads up? ###  Let's think step by step. "
    "2 + 3 = 5, so x = 5.\n\tdef f(n):\n        return n * 2  # café, naïve, 東京, Ωμέγα --> yes"
)
DISTRIBUTION_TOLERANCE = 1e-3  # |log sum p| over the full vocabulary, in nats, at fp32 after log_softmax


@dataclass
class Check:
    name: str
    status: Literal["pass", "skip"]
    detail: str


def compare_tokenizers(student: Any, teacher: Any) -> Check:
    s_vocab, t_vocab = student.get_vocab(), teacher.get_vocab()
    differing = sum(s_vocab.get(t) != t_vocab.get(t) for t in s_vocab.keys() | t_vocab.keys())
    if differing:
        raise UserError(
            f"student and teacher tokenizers differ in {differing:,} ids ({len(s_vocab):,} vs {len(t_vocab):,} "
            "tokens): on-policy distillation needs the same tokenizer; use a teacher of the student's family or the "
            "SFT recipe (cotbridge run)"
        )
    s_ids, t_ids = student(FIXED_TEXT)["input_ids"], teacher(FIXED_TEXT)["input_ids"]
    if s_ids != t_ids:
        at = next((i for i, (a, b) in enumerate(zip(s_ids, t_ids)) if a != b), min(len(s_ids), len(t_ids)))
        raise UserError(
            f"student and teacher tokenizers share a vocabulary but split the same text differently (from token {at}: "
            f"{s_ids[at : at + 3]} vs {t_ids[at : at + 3]}): their normalizers or merges differ; use the teacher's "
            "tokenizer files for the student, or a teacher of the student's family"
        )
    for role in ("eos", "bos"):
        s_tok, t_tok = getattr(student, f"{role}_token"), getattr(teacher, f"{role}_token")
        if getattr(student, f"{role}_token_id") != getattr(teacher, f"{role}_token_id"):
            raise UserError(
                f"student and teacher {role} tokens differ ({s_tok!r} vs {t_tok!r}): the student would learn to "
                f"{'stop' if role == 'eos' else 'start'} where the teacher does not; set the student's "
                f"{role}_token to {t_tok!r} (its tokenizer_config.json) or use a teacher of the same variant (base vs "
                "instruct)"
            )
    # Padding is masked out of the loss on both sides: a different pad token is harmless, so only reported.
    pad = "same pad" if student.pad_token_id == teacher.pad_token_id else "pad tokens differ (masked: harmless)"
    detail = (
        f"{len(s_vocab):,} tokens with the same ids; {len(s_ids)} fixed-text tokens split alike; same eos/bos; {pad}"
    )
    return Check("tokenizer", "pass", detail)


def compare_output_width(student_config: Any, teacher_config: Any) -> Check:
    s, t = student_config.get_text_config().vocab_size, teacher_config.get_text_config().vocab_size
    if s != t:
        raise UserError(
            f"the student's output layer has {s:,} logits and the teacher's {t:,}: on-policy distillation compares "
            "full next-token distributions, which must have the same width; use a teacher with the student's "
            "vocab_size (models of one family can differ here, e.g. Qwen2.5-0.5B and 7B)"
        )
    return Check("output_width", "pass", f"{s:,} logits on both sides")


def compare_chat_templates(student: Any, teacher: Any, chat: bool) -> Check:
    s, t = student.chat_template, teacher.chat_template
    if s == t:
        return Check("chat_template", "pass", "identical" if s else "neither has one")
    if not chat:
        return Check("chat_template", "skip", "templates differ, unused: the prompts are plain text")
    at = next((i for i, (a, b) in enumerate(zip(s or "", t or "")) if a != b), min(len(s or ""), len(t or "")))
    raise UserError(
        f"student and teacher chat templates differ (from character {at}): the teacher would grade text framed "
        "otherwise than the student reads it; use a teacher with the student's chat template, or a plain-text "
        "format (format: finetune_cot)"
    )


def teacher_logprobs(teacher: Any, ids: list[int], top_k: int) -> tuple[Any, Any, Any]:
    """(full log-probs [T, V], top-k log-probs [T, k], their ids [T, k]) of the teacher at each position of ``ids``."""
    import torch

    device = next(teacher.parameters()).device
    with torch.no_grad():
        logits = teacher(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    full = torch.log_softmax(logits, dim=-1)
    top = full.topk(min(top_k, full.shape[-1]), dim=-1)
    return full, top.values, top.indices


def check_teacher_logprobs(teacher: Any, tokenizer: Any, top_k: int) -> Check:
    import torch

    ids = tokenizer(FIXED_TEXT)["input_ids"]
    full, top, _ = teacher_logprobs(teacher, ids, top_k)
    bad = (~torch.isfinite(full)).any(dim=-1).sum().item()
    if bad:
        raise UserError(
            f"the teacher's log-probs are not finite at {bad} of {len(ids)} positions of a fixed text: its weights "
            "or dtype are broken; load it in float32 (teacher_dtype: float32) or check its files"
        )
    if top.shape[-1] < top_k:
        raise UserError(
            f"the teacher returns log-probs over {top.shape[-1]:,} tokens, fewer than the requested top-k {top_k:,}: "
            "lower top_k"
        )
    mass = full.logsumexp(dim=-1).abs().max().item()
    if mass > DISTRIBUTION_TOLERANCE:
        raise UserError(
            f"the teacher's log-probs do not sum to one (|log sum p| up to {mass:.2e} nats): its output layer is "
            "broken; check its files"
        )
    return Check(
        "teacher_logprobs",
        "pass",
        f"{len(ids)} positions x top-{top_k} of {full.shape[-1]:,}, finite, |log sum p| <= {mass:.1e} nats",
    )


def served_check(url: str | None, teacher: Any, tokenizer: Any, top_k: int, tolerance: float) -> Check:
    if url is None:
        return Check(
            "served_teacher", "skip", "no served teacher configured (distill.teacher_url): nothing to compare"
        )
    import openai

    ids = tokenizer(FIXED_TEXT)["input_ids"]
    full, _, _ = teacher_logprobs(teacher, ids, top_k)
    client = openai.OpenAI(
        base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "none", max_retries=2, timeout=120
    )
    fix = "start it (cotbridge serve MODEL, or vllm serve MODEL) or remove distill.teacher_url"
    try:
        model = client.models.list().data[0].id
        resp = client.completions.create(model=model, prompt=ids, max_tokens=1, extra_body={"prompt_logprobs": top_k})
    except openai.APIConnectionError as e:
        raise UserError(f"cannot reach the served teacher at {url} ({e.__cause__ or e}): {fix}") from None
    except openai.APIStatusError as e:
        raise UserError(
            f"the served teacher at {url} refused a prompt_logprobs request ({e.status_code}: {e.message}): it must "
            "return vLLM's prompt_logprobs (vLLM, cotbridge serve)"
        ) from None
    positions = (resp.choices[0].model_extra or {}).get("prompt_logprobs") if resp.choices else None
    if not isinstance(positions, list) or len(positions) != len(ids):
        raise UserError(
            f"the served teacher at {url} ({model}) returned no prompt_logprobs for the {len(ids)} tokens it was "
            "sent: it must return vLLM's prompt_logprobs (vLLM, cotbridge serve)"
        )
    gaps = []
    for pos in range(1, len(ids)):
        entry = positions[pos] or {}
        actual = entry.get(str(ids[pos]))
        if actual is None or len(entry) < top_k:
            raise UserError(
                f"the served teacher at {url} ({model}) returned {len(entry)} log-probs at position {pos}, without "
                f"the actual token's or under top_k={top_k}: serve it with a larger --max-logprobs, or lower top_k"
            )
        gaps.append(abs(float(actual["logprob"]) - full[pos - 1, ids[pos]].item()))
    # The mean, not the largest: bf16 against fp32 moves single positions by ~0.2 nats (bench/on_policy_speed.py),
    # while another model or other weights move the mean by nats.
    mean, worst = sum(gaps) / len(gaps), max(gaps)
    at = gaps.index(worst) + 1
    if mean > tolerance:
        raise UserError(
            f"the served teacher at {url} ({model}) and the in-process teacher disagree by {mean:.3f} nats a token "
            f"on average (up to {worst:.3f} at position {at} of a fixed text; tolerance {tolerance}): it serves "
            "another model, other weights or a lower precision; serve distill.teacher as configured, or raise "
            "distill.served_tolerance"
        )
    return Check(
        "served_teacher",
        "pass",
        f"{model} at {url}: {len(gaps)} positions, {mean:.3f} nats a token from the in-process teacher on average "
        f"(at most {worst:.3f}; tolerance {tolerance}), top-{top_k} returned",
    )


def preflight(
    student: tuple[Any, Any],
    teacher: tuple[Any, Any],
    *,
    chat: bool = False,
    top_k: int = 20,
    served_url: str | None = None,
    served_tolerance: float = 0.1,
) -> list[dict[str, str]]:
    """Every check on (student model or config, tokenizer) and (teacher model, tokenizer); the first failure raises
    one line. Only the student's config and tokenizer are read."""
    s_model, s_tok = student
    t_model, t_tok = teacher
    s_config = getattr(s_model, "config", s_model)
    checks = [
        compare_tokenizers(s_tok, t_tok),
        compare_output_width(s_config, t_model.config),
        compare_chat_templates(s_tok, t_tok, chat),
        check_teacher_logprobs(t_model, s_tok, top_k),
        served_check(served_url, t_model, s_tok, top_k, served_tolerance),
    ]
    return [asdict(c) for c in checks]
