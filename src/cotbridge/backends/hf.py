"""Local transformers generation: length-sorted batches, left padding, n samples per prompt.

Models load through :mod:`cotbridge.models.loading` (hub id, folder, GGUF file).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

from cotbridge.backends.base import (
    BACKENDS,
    Completion,
    GenerationInterrupted,
    Request,
    ResultCallback,
    truncate_at_stop,
)
from cotbridge.backends.kv_cache import cache_argument
from cotbridge.errors import UserError
from cotbridge.models.cpu_features import cpu_flags
from cotbridge.models.loading import load_model_and_tokenizer
from cotbridge.models.prepacked_linear import prepack_linears

log = logging.getLogger(__name__)


class HFBackend:
    """Batched local generation with transformers."""

    kind = "hf"
    cacheable = True  # worth a cache entry: costs money or minutes to make again

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        batch_size: int = 16,
        dtype: str = "auto",
        model_obj: Any = None,
        tokenizer: Any = None,
        kv_cache: str = "auto",
        decoding: str = "auto",
        lookahead: int | None = None,
        draft_rows: int | None = None,
    ):
        if model_obj is not None:
            self.model, self.tokenizer = model_obj, tokenizer
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        else:
            self.model, self.tokenizer = load_model_and_tokenizer(model, gguf_file, dtype, generation=True)
            # Each weight packed once for the CPU's kernels, not at every product (fp32: for batch_size rows). Only a
            # model loaded here (a private copy): one passed in may be training, and merges write where packs miss.
            prepack_linears(self.model, rows=batch_size)
        self.model_id = model
        self.batch_size = batch_size
        # Greedy slot decoding: prompt-lookup draft tokens checked per step. Checking 5 positions costs ~1.5 single
        # steps where bf16 matrix products are cheap (a GPU, AMX), ~2 in fp32 on a CPU: a loss there (bench/).
        import torch

        low_precision = self.model.dtype in (torch.bfloat16, torch.float16)
        self.lookahead = lookahead if lookahead is not None else 4 if low_precision else 0
        # Without AMX tiles a CPU's bf16 products are compute-bound (an AMD EPYC Zen 4: a step over 16 rows x 5
        # positions took 3.1x the linear-product time of 16 x 1 in a profile), so drafts pay only while few rows are
        # busy (bench/results/prompt_lookup_drafts_zen4*.md). None: the hardware's default (drafting_rows).
        self.draft_rows = draft_rows if draft_rows is not None else drafting_rows(self.model)
        self.stats: dict[str, int] = {}  # the last slot-decoding call's steps and pre-filled prompt tokens
        self.prefixes: Any = None  # a PrefixStore while keeping_prefixes() is active
        # Built once per stop list: transformers' own cache misses (its key depends on vocab order), and
        # rebuilding costs ~0.5 s per generate() call with a 49k vocabulary.
        self._stop_criteria: dict[tuple[str, ...], Any] = {}
        # Set by a caller that may abandon a generation (the HTTP server: client gone, or shutting down).
        self.interrupt: Callable[[], bool] | None = None
        if kv_cache not in ("auto", "in_place", "dynamic"):
            raise UserError(f"kv_cache must be auto, in_place or dynamic, not {kv_cache!r}")
        from cotbridge.backends.kv_cache import supports_growing_cache

        # "auto": append to the key/value cache in place where the model allows it (see backends/kv_cache.py)
        self.in_place_cache = kv_cache == "in_place" or (kv_cache == "auto" and supports_growing_cache(self.model))
        if decoding not in DECODING:
            raise UserError(f"decoding must be one of {', '.join(DECODING)}, not {decoding!r}")
        # "slots" (backends/slot_decoding.py): finished rows are refilled, a prompt is pre-filled once for its
        # samples; "batches": transformers' generate() on length-sorted batches (encoder-decoder models, and the
        # reference the slot path is tested against).
        self.decoding = (
            decoding if decoding != "auto" else "slots" if supports_growing_cache(self.model) else "batches"
        )
        if self.decoding == "slots" and not supports_growing_cache(self.model):
            raise UserError(f"decoding=slots needs a decoder-only model with full attention in every layer: {model}")

    def render(self, req: Request) -> str:
        if req.prompt is not None:
            if self.model.config.is_encoder_decoder:
                from cotbridge.models.student_io import encoder_input

                # Encoder-decoder students train on `{question}`; the student modes write `{question} ###`.
                return encoder_input(req.prompt)
            return req.prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"model {self.model_id} has no chat template; use a plain prompt mode")
        return self.tokenizer.apply_chat_template(
            req.messages,
            tokenize=False,
            add_generation_prompt=not req.continue_final,
            continue_final_message=req.continue_final,
        )

    def encode(self, requests: list[Request]) -> list[list[int]]:
        """Each request's prompt as the token ids the model reads: its ``prompt_ids`` as given, else its rendered
        text (T5-style tokenizers end the encoder input with </s>, as in training; decoder-only prompts get no
        BOS/EOS)."""
        texts = [self.render(r) for r in requests if r.prompt_ids is None]
        special = bool(self.model.config.is_encoder_decoder)
        encoded = iter(self.tokenizer(texts, add_special_tokens=special)["input_ids"] if texts else [])
        return [list(r.prompt_ids) if r.prompt_ids is not None else next(encoded) for r in requests]

    @property
    def vocab_size(self) -> int:
        """How many token ids the model has logits for (a valid id is below it)."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    def score(self, seqs: list[list[int]], top_n: int, pick: list[Any] | None = None) -> list[list[Any]]:
        """The log-prob of each token of each sequence given those before it, with the ``top_n`` most likely
        there (:func:`cotbridge.backends.token_logprobs.sequence_logprobs`)."""
        from cotbridge.backends.token_logprobs import sequence_logprobs

        if self.model.config.is_encoder_decoder:
            raise UserError(f"{self.model_id} is an encoder-decoder model: token log-probs need a causal LM")
        return sequence_logprobs(self.model, seqs, top_n, pick)

    @property
    def stop_ids(self) -> set[int]:
        """The token ids that end a generation (the tokenizer's EOS and the generation config's)."""
        return ({self.tokenizer.eos_token_id} | self._eos_ids()) - {None}

    @property
    def context_window(self) -> int | None:
        """The most positions the model takes, prompt and completion together (None: unknown, nothing checked)."""
        from cotbridge.backends.context_window import context_window

        return context_window(self.model, self.tokenizer)

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        """A request whose prompt does not fit the context window is not generated: its completions say why
        (finish_reason ``context_overflow``); one whose ``max_tokens`` does not fit gets what fits
        (backends/context_window.py). Nothing is truncated."""
        from cotbridge.backends.context_window import fit_to_window, skipped_completions

        prompts = self.encode(requests)
        encoder_decoder = bool(self.model.config.is_encoder_decoder)
        fit = fit_to_window(requests, [len(p) for p in prompts], self.context_window, encoder_decoder)
        out: list[list[Completion]] = [[] for _ in requests]
        for i, reason in fit.skipped.items():
            out[i] = skipped_completions(requests[i], reason)
            if on_result is not None:
                on_result(i, out[i])
        todo = [i for i in range(len(requests)) if i not in fit.skipped]
        if not todo:
            return out
        done = (lambda j, comps: on_result(todo[j], comps)) if on_result is not None else None
        reqs, ids = [fit.requests[i] for i in todo], [prompts[i] for i in todo]
        made = (
            self._generate_in_slots(reqs, ids, progress, done)
            if self.decoding == "slots"
            else self._generate_in_batches(reqs, ids, progress, done)
        )
        for i, comps in zip(todo, made):
            out[i] = comps
        return out

    def _generate_in_batches(
        self,
        requests: list[Request],
        prompts: list[list[int]],
        progress: bool,
        on_result: ResultCallback | None,
    ) -> list[list[Completion]]:
        lengths = [len(ids) for ids in prompts]
        # Requests that share generation settings can share a batch; inside a group, sort by length
        # so padding is small.
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(
                (r.n, r.temperature, r.top_p, r.max_tokens, tuple(r.stop), r.seed, r.first_sample), []
            ).append(i)
        out: list[list[Completion]] = [[] for _ in requests]
        total = sum(
            math.ceil(len(ix) * requests[ix[0]].n / max(self.batch_size, requests[ix[0]].n)) for ix in groups.values()
        )
        bar = tqdm(
            total=total,
            desc=f"generate ({self.model_id.split('/')[-1]})",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for idx in groups.values():
            idx.sort(key=lambda i: -lengths[i])
            per_batch = max(1, self.batch_size // requests[idx[0]].n)
            for start in range(0, len(idx), per_batch):
                chunk = idx[start : start + per_batch]
                for i, comps in zip(chunk, self._generate_batch([prompts[i] for i in chunk], requests[chunk[0]])):
                    out[i] = comps
                    if on_result is not None:
                        on_result(i, comps)
                bar.update(1)
        bar.close()
        return out

    def _generate_in_slots(
        self,
        requests: list[Request],
        prompts: list[list[int]],
        progress: bool,
        on_result: ResultCallback | None,
    ) -> list[list[Completion]]:
        from cotbridge.backends.slot_decoding import Job, SlotDecoder

        jobs = [
            Job(p, r.n, r.temperature, r.top_p, r.max_tokens, tuple(r.stop), r.seed, r.first_sample)
            for p, r in zip(prompts, requests)
        ]
        out: list[list[Completion]] = [[] for _ in requests]
        bar = tqdm(
            total=len(requests),
            desc=f"generate ({self.model_id.split('/')[-1]})",
            unit="request",
            disable=not progress,
            leave=False,
        )

        def done(i: int, samples: list[Any]) -> None:
            req, comps = requests[i], []
            for f in samples:
                text, hit_stop = truncate_at_stop(self.tokenizer.decode(f.tokens, skip_special_tokens=True), req.stop)
                finished = f.hit_eos or hit_stop or len(f.tokens) < req.max_tokens
                used = len(f.tokens) + int(f.hit_eos)
                extra = {"token_ids": list(f.tokens)} if req.token_ids else {}
                comps.append(
                    Completion(text, "stop" if finished else "length", len(prompts[i]), used, f.latency_s, extra)
                )
            out[i] = comps
            bar.update(1)
            if on_result is not None:
                on_result(i, comps)

        decoder = SlotDecoder(
            self.model,
            slots=self.batch_size,
            eos_ids=({self.tokenizer.eos_token_id} | self._eos_ids()) - {None},
            pad_id=self.tokenizer.pad_token_id,
            tail_text=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            interrupt=self.interrupt,
            lookahead=self.lookahead,
            draft_rows=self.draft_rows,
            prefixes=self.prefixes,
        )
        try:
            decoder.run(jobs, done)
        finally:
            bar.close()
            self.stats = {
                "steps": decoder.steps,
                "prefill_tokens": decoder.prefill_tokens,
                "drafted": decoder.drafted,
                "accepted": decoder.accepted,
                "reused_tokens": decoder.reused_tokens,
            }
        if decoder.interrupted:
            raise GenerationInterrupted("generation abandoned: its caller is gone")
        return out

    @contextlib.contextmanager
    def keeping_prefixes(self, budget_mb: float = 2048) -> Iterator[None]:
        """Within: the keys/values of finished sequences are kept (up to ``budget_mb``), and a later prompt that
        begins with one pre-fills only the rest (stage 2 of a two-stage call: stage 1's prompt and rationale, then
        the answer trigger). Slot decoding only."""
        from cotbridge.backends.token_reuse import PrefixStore

        self.prefixes = PrefixStore(budget_mb) if self.decoding == "slots" else None
        try:
            yield
        finally:
            self.prefixes = None

    def _generate_batch(self, prompts: list[list[int]], req: Request) -> list[list[Completion]]:
        import torch

        enc = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(self.model.device)
        sample = req.temperature > 0
        gen_kw: dict[str, Any] = dict(
            max_new_tokens=req.max_tokens,
            do_sample=sample,
            num_return_sequences=req.n,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if self.in_place_cache:
            from cotbridge.backends.kv_cache import GrowingCache

            gen_kw[cache_argument(self.model)] = GrowingCache()
        if sample:
            gen_kw.update(temperature=req.temperature, top_p=req.top_p, top_k=0)
            torch.manual_seed(req.seed * 100_003 + req.first_sample)
        criteria: list[Any] = []
        if req.stop:
            from transformers import StopStringCriteria

            key = tuple(req.stop)
            if key not in self._stop_criteria:
                self._stop_criteria[key] = StopStringCriteria(self.tokenizer, list(key))
            criteria.append(self._stop_criteria[key])
        interrupt = _Interrupt(self.interrupt) if self.interrupt is not None else None
        if interrupt is not None:
            criteria.append(interrupt)
        if criteria:
            from transformers import StoppingCriteriaList

            gen_kw["stopping_criteria"] = StoppingCriteriaList(criteria)
        t0 = time.perf_counter()
        with torch.inference_mode():
            seqs = self.model.generate(**enc, **gen_kw)
        if interrupt is not None and interrupt.fired:
            raise GenerationInterrupted("generation abandoned: its caller is gone")
        latency = (time.perf_counter() - t0) / len(prompts)
        # Decoder-only outputs repeat the prompt; encoder-decoder outputs are the decoder start token + the new tokens.
        new = seqs[:, 1:] if self.model.config.is_encoder_decoder else seqs[:, enc["input_ids"].shape[1] :]
        eos = ({self.tokenizer.eos_token_id} | self._eos_ids()) - {None}
        results: list[list[Completion]] = []
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        for row, ids in enumerate(new.tolist()):
            n_tokens = next((j + 1 for j, t in enumerate(ids) if t in eos), None)
            hit_eos = n_tokens is not None
            ids = ids[: n_tokens - 1] if hit_eos else ids
            ids = [t for t in ids if t != self.tokenizer.pad_token_id]  # padding, or T5's decoder start token
            text, hit_stop = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), req.stop)
            finished = hit_eos or hit_stop or len(ids) < req.max_tokens
            if row % req.n == 0:
                results.append([])
            results[-1].append(
                Completion(
                    text,
                    "stop" if finished else "length",
                    prompt_lens[row // req.n],
                    n_tokens or len(ids),
                    latency,
                    {"token_ids": ids} if req.token_ids else {},
                )
            )
        return results

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


DECODING = ("auto", "slots", "batches")
# The most busy rows for which a step checks drafts where matrix products are compute-bound (a CPU without AMX
# tiles, or fp32). bf16 GSM8K zero-shot-CoT on an AMD EPYC Zen 4, drafts at every step against none: 0.65x the time at
# 4 slots, 0.98x at 16; the coin flip's zero-shot-CoT at 50 slots 1.71x (bench/results/prompt_lookup_drafts_zen4*.md).
DRAFT_ROWS_COMPUTE_BOUND = 6


def drafting_rows(model: Any) -> int | None:
    """The most busy rows for which slot decoding checks prompt-lookup drafts: any number (None) on a GPU, and for
    bf16/fp16 weights on a CPU with AMX tiles, where a step over 5 positions a row costs little more than one over 1;
    a few rows elsewhere."""
    import torch

    parameter = next(model.parameters())
    if parameter.device.type != "cpu":
        return None
    if parameter.dtype in (torch.bfloat16, torch.float16) and "amx_bf16" in cpu_flags():
        return None
    return DRAFT_ROWS_COMPUTE_BOUND


BACKENDS.add("hf", HFBackend)


class _Interrupt:
    """A stopping criterion that ends every row at once when ``check()`` turns true (polled every 8 tokens)."""

    def __init__(self, check: Callable[[], bool]):
        self.check, self.calls, self.fired = check, 0, False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.calls += 1
        if not self.fired and self.calls % 8 == 0:
            self.fired = bool(self.check())
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)
