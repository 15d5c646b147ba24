"""Decoding in slots: a fixed number of rows in flight, each refilled as soon as its sequence finishes.

``model.generate`` runs a batch until its longest row is done, so a batch of 16 costs 16 rows x the longest
completion even when most rows stopped early; its samples of one prompt each pre-fill the prompt again
(``num_return_sequences`` copies it k times). Here:

* every slot holds one sequence; a finished one leaves at once and the next pending sequence takes its place;
* a prompt is pre-filled once and its keys/values copied into the slots of all its samples;
* the tokens that all prompts taken into free slots together begin with (a few-shot prompt's exemplars, a chat
  template's system prompt) are pre-filled once, in one row, and the prompts' own tokens after them; that start is
  kept for the run, so a later refill of even one prompt that begins with it pre-fills only the rest;
* once nothing is pending the finished slots are dropped, so the batch shrinks with the work left;
* the keys/values live in one buffer per layer with all slots aligned on a shared write column (new prompts are
  right-aligned to it, their left columns masked), so a step appends in place instead of concatenating;
* each sample draws from its own generator seeded by (request seed, sample index): a sample does not depend on
  which other sequences shared its batch.

Greedy outputs equal ``generate``'s (tests/test_slot_decoding.py). The model is called with its ``cache``, a 4D mask
and explicit positions, not through ``generate(past_key_values=...)``, which transformers v6 removes.
Decoder-only models whose layers all attend to the full sequence (``kv_cache.supports_growing_cache``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from cotbridge.backends.decoding_step import step_logits
from cotbridge.backends.grouped_attention import ATTENTION, register_attention
from cotbridge.backends.kv_cache import cache_argument, cache_from, stacked_keys_values
from cotbridge.backends.token_reuse import NgramIndex, PrefixStore, common_length, shared_start


@dataclass
class Job:
    """One request: its prompt's token ids and the settings its ``n`` samples share."""

    prompt: list[int]
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    first_sample: int = 0


@dataclass
class Finished:
    """One sample: its new token ids (up to and without EOS), how it ended and what it cost."""

    tokens: list[int]
    hit_eos: bool
    hit_stop: bool
    latency_s: float


@dataclass
class _Sequence:
    job: int
    sample: int
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    started: float = 0.0
    index: NgramIndex | None = None  # greedy sequences, when drafting


class _SlotCache(DynamicCache):
    """The model's view of the slot buffers: ``update`` writes the step's keys/values at the shared write column
    and returns the live columns."""

    def __init__(self, owner: SlotDecoder):
        Cache.__init__(self, layers=[DynamicLayer() for _ in range(owner.n_layers)])
        self.owner = owner

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kw: Any):
        o = self.owner
        end = o.end + key_states.shape[-2]
        o.keys[layer_idx][:, :, o.end : end].copy_(key_states)
        o.values[layer_idx][:, :, o.end : end].copy_(value_states)
        return o.keys[layer_idx][:, :, o.start : end], o.values[layer_idx][:, :, o.start : end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.owner.end - self.owner.start


class SlotDecoder:
    """Runs jobs through ``slots`` rows of one model. ``tail_text(ids)`` decodes the last tokens of a sequence
    for the stop-string check; ``interrupt()`` is polled every 8 steps and ends the run when true."""

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        eos_ids: set[int],
        pad_id: int,
        tail_text: Callable[[list[int]], str],
        interrupt: Callable[[], bool] | None = None,
        lookahead: int = 4,
        draft_rows: int | None = None,
        prefixes: PrefixStore | None = None,
    ):
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers stay
        self.slots, self.eos_ids, self.pad_id = max(1, slots), eos_ids, pad_id
        self.tail_text, self.interrupt = tail_text, interrupt
        self.lookahead = lookahead  # prompt-lookup draft tokens per greedy step (0: none)
        # Drafts are checked only while at most this many rows are busy (None: always): where matrix products are
        # compute-bound, a step over rows x (1 + lookahead) positions costs more than the drafts save
        self.draft_rows = draft_rows
        self.prefixes = prefixes  # finished sequences' keys/values, for prompts that continue them
        self.interrupted = False
        cfg = self.model.config
        self.n_layers = cfg.num_hidden_layers
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        self.cache_kw = cache_argument(self.model)
        self.steps = 0  # decoding steps taken (one token for every busy slot)
        self.prefill_tokens = 0  # prompt tokens pre-filled (each prompt once, however many samples)
        self.drafted = self.accepted = 0  # prompt-lookup tokens proposed / confirmed by the model
        self.reused_tokens = 0  # prompt tokens whose keys/values were copied: a stored prefix, a shared start
        self._keep_prefix([], [], [])

    def _keep_prefix(self, tokens: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """The last prefix that prompts pre-filled together shared, kept for the run (_kept_prefix)."""
        self.kept_prefix_tokens, self.kept_prefix_keys, self.kept_prefix_values = tokens, keys, values

    # -- the buffers: keys/values [slots, heads, capacity, head_dim] per layer, mask [slots, capacity] --
    def _allocate(self, rows: int, capacity: int, offset: int) -> None:
        """New buffers of ``capacity`` columns; the live columns move to start at ``offset``."""
        shape = (rows, self.kv_heads, capacity, self.head_dim)
        live = self.end - self.start
        # Zeros, not empty: a slot's columns it never wrote are masked, but a masked NaN (reused memory may hold
        # any bits) still makes the attention NaN (tests/test_slot_decoding.py fills empty buffers with NaN).
        keys = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        values = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        valid = torch.zeros((rows, capacity), dtype=torch.bool, device=self.device)
        if live:
            for new, old in zip(keys + values, self.keys + self.values):
                new[:, :, offset : offset + live].copy_(old[:, :, self.start : self.end])
            valid[:, offset : offset + live] = self.valid[:, self.start : self.end]
        self.keys, self.values, self.valid = keys, values, valid
        self.row_start += offset - self.start
        self.start, self.end = offset, offset + live

    def _make_room(self, left: int, right: int = 1) -> None:
        """At least ``left`` columns before the write column (a prompt being placed) and ``right`` from it on."""
        if self.end >= left and self.end + right <= self.valid.shape[1]:
            if self.end - left < self.start:  # the placed prompt reaches left of the live columns: clear them
                self.valid[:, self.end - left : self.start] = False
                self.start = self.end - left
            return
        live = self.end - self.start
        offset = max(left - live, 0)
        capacity = max(offset + live + right + 64, (offset + live + right) * 3 // 2)
        self._allocate(self.valid.shape[0], capacity, offset)
        self._make_room(left, right)

    def _keep_rows(self, rows: list[int]) -> None:
        """Drop every other slot (nothing is pending and they are idle)."""
        index = torch.tensor(rows, device=self.device)
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.valid = self.valid.index_select(0, index)
        self.next_tok, self.pos = self.next_tok[index], self.pos[index]
        self.row_start = self.row_start[rows]  # kept on the CPU (read for column bookkeeping, never on the device)
        self.busy = [self.busy[i] for i in rows]

    def run(self, jobs: list[Job], on_done: Callable[[int, list[Finished]], None]) -> None:
        """Decode every sample of every job; ``on_done(job_index, samples)`` once a job's samples are all done."""
        self.jobs = jobs
        self.results: list[list[Finished | None]] = [[None] * j.n for j in jobs]
        self.left = [j.n for j in jobs]
        self.on_done = on_done
        self.all_greedy = all(j.temperature <= 0 for j in jobs)
        # Longest prompts first: the first placements set the write column, later (shorter) prompts fit before it.
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].prompt))
        self.pending: list[tuple[int, int]] = [(i, s) for i in order for s in range(jobs[i].n)][::-1]
        rows = min(self.slots, len(self.pending))
        self.start = self.end = 0
        self.keys, self.values = [], []
        self.valid = torch.zeros((rows, 0), dtype=torch.bool, device=self.device)
        self.row_start = torch.zeros(rows, dtype=torch.long)
        self.next_tok = torch.full((rows,), self.pad_id, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.busy: list[_Sequence | None] = [None] * rows
        self._keep_prefix([], [], [])
        cache = _SlotCache(self)
        config = self.model.config
        attention = config._attn_implementation
        self.bool_mask = attention in ("sdpa", "flex_attention")
        if attention == "sdpa":  # for the run only: the model may be shared (a trainer's dev evaluation)
            register_attention()
            config._attn_implementation = ATTENTION
        try:
            self._loop(cache)
        finally:
            config._attn_implementation = attention

    def _loop(self, cache: _SlotCache) -> None:
        with torch.inference_mode():
            while True:
                self._refill()
                live = [i for i, s in enumerate(self.busy) if s is not None]
                if not live:
                    break
                if not self.pending and len(live) <= len(self.busy) * 3 // 4:
                    self._keep_rows(live)
                self._step(cache)
                self.steps += 1
                if self.interrupt is not None and self.steps % 8 == 0 and self.interrupt():
                    self.interrupted = True
                    return

    def _refill(self) -> None:
        free = [i for i, s in enumerate(self.busy) if s is None]
        if not free or not self.pending:
            return
        taken = [self.pending.pop() for _ in range(min(len(free), len(self.pending)))]
        jobs = list(dict.fromkeys(j for j, _ in taken))  # each prompt pre-filled once for all its samples here
        t0 = time.perf_counter()
        reuse = {
            j: hit for j in jobs if self.prefixes is not None and (hit := self.prefixes.longest(self.jobs[j].prompt))
        }
        prefilled = self._prefill([j for j in jobs if j not in reuse])
        prefilled |= {j: self._prefill_after(j, *hit) for j, hit in reuse.items()}
        self._make_room(max(kv.shape[-2] for _, kv, _ in prefilled.values()))
        for slot, (j, s) in zip(free, taken):
            job = self.jobs[j]
            logits, kv, mask = prefilled[j]
            seq = _Sequence(j, s, _generator(job, s, self.device), started=t0)
            if self.lookahead and self.all_greedy and self.draft_rows != 0:
                seq.index = NgramIndex(job.prompt)
            first = int(self._choose(logits, [seq])[0])
            if self._take(seq, first):
                continue  # done at its first token: it never needs a slot
            lo = self.end - kv.shape[-2]
            for layer in range(self.n_layers):
                self.keys[layer][slot, :, lo : self.end].copy_(kv[0, layer])
                self.values[layer][slot, :, lo : self.end].copy_(kv[1, layer])
            self.valid[slot, self.start : self.end] = False
            self.valid[slot, lo : self.end] = mask
            self.row_start[slot] = lo + int(mask.int().argmax())  # its first column (pads may follow a shared prefix)
            self.next_tok[slot], self.pos[slot] = first, len(job.prompt)
            self.busy[slot] = seq

    def _prefill(self, jobs: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Prompts pre-filled together, left-padded after the tokens they all begin with (a few-shot prompt's
        exemplars, a chat template's system prompt: pre-filled once, in one row, or taken from the prefix kept for
        the run, which even a single prompt may begin with): per job its next-token logits [1, vocab], keys and
        values [2, layers, heads, width, dim] and which of the width columns are its tokens."""
        if not jobs:
            return {}
        prompts = [self.jobs[j].prompt for j in jobs]
        shared = shared_start(prompts, self.kept_prefix_tokens)
        cache: dict[str, Any] = {}
        if shared:
            before = self.prefill_tokens
            keys, values = self._kept_prefix(prompts[0][:shared])
            rows = (len(jobs), -1, -1, -1)
            cache = {self.cache_kw: cache_from([k.expand(rows) for k in keys], [v.expand(rows) for v in values])}
            self.reused_tokens += shared * len(jobs) - (self.prefill_tokens - before)
        width = max(len(p) for p in prompts) - shared
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for r, p in enumerate(prompts):  # left padding: every prompt ends at the write column
            ids[r, width - (len(p) - shared) :] = torch.tensor(p[shared:])
            mask[r, shared + width - (len(p) - shared) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp(min=0)[:, shared:],
            use_cache=True,
            logits_to_keep=1,
            **cache,
        )
        self.prefill_tokens += int(mask[:, shared:].sum())
        kv = stacked_keys_values(out[self.cache_kw], self.n_layers)  # [2, layers, rows, heads, shared + width, dim]
        logits = out.logits[:, -1].float()
        return {j: (logits[r : r + 1], kv[:, :, r], mask[r].bool()) for r, j in enumerate(jobs)}

    def _kept_prefix(self, tokens: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Keys and values [1, heads, len(tokens), dim] per layer of a prefix that prompts share, kept for the run:
        a later refill of even one prompt that begins with it (a few-shot prompt's exemplars) pre-fills only the
        rest. What the kept prefix already covers is sliced from it (a key depends only on the tokens before it);
        the rest is pre-filled after it, and the longer prefix is kept instead."""
        n = common_length(self.kept_prefix_tokens, tokens)
        keys = [k[:, :, :n] for k in self.kept_prefix_keys]
        values = [v[:, :, :n] for v in self.kept_prefix_values]
        if n < len(tokens):
            out = self._prefill_rest(tokens, n, cache_from(keys, values) if n else None)
            layers = out[self.cache_kw].layers[: self.n_layers]
            keys, values = [a.keys for a in layers], [a.values for a in layers]
            self._keep_prefix(list(tokens), keys, values)
        return keys, values

    def _prefill_rest(self, tokens: list[int], n: int, cache: Cache | None) -> Any:
        """The model's pass over ``tokens[n:]`` (one row, positions n on) after ``cache``, which holds the first
        ``n`` tokens' keys/values (None when n is 0)."""
        self.prefill_tokens += len(tokens) - n
        return self.model(
            input_ids=torch.tensor([tokens[n:]], device=self.device),
            position_ids=torch.arange(n, len(tokens), device=self.device)[None],
            use_cache=True,
            logits_to_keep=1,
            **({} if cache is None else {self.cache_kw: cache}),
        )

    def _prefill_after(self, j: int, stored: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A prompt whose first ``n`` tokens' keys/values are stored: only the rest is pre-filled."""
        prompt = self.jobs[j].prompt
        cache = cache_from(stored[0, :, None, :, :n].unbind(), stored[1, :, None, :, :n].unbind())
        out = self._prefill_rest(prompt, n, cache)
        self.reused_tokens += n
        mask = torch.ones(len(prompt), dtype=torch.bool, device=self.device)
        return out.logits[:, -1].float(), stacked_keys_values(cache, self.n_layers)[:, :, 0], mask

    def _keep(self, slot: int, seq: _Sequence, end: int) -> None:
        """Store a finished sequence's keys/values under its tokens (those in the cache: all but the last, or all of
        them where the model confirmed a draft past a stop string), from its columns before ``end`` (the step's own
        included)."""
        cols = self.valid[slot, self.start : end].nonzero().squeeze(-1) + self.start
        tokens = self.jobs[seq.job].prompt + seq.tokens
        cols = cols[: len(tokens)]  # drafts the model confirmed past a stop string: no token of the sequence
        keys = torch.stack([k[slot].index_select(1, cols) for k in self.keys])
        values = torch.stack([v[slot].index_select(1, cols) for v in self.values])
        self.prefixes.add(tokens[: len(cols)], torch.stack([keys, values]))

    def _step(self, cache: _SlotCache) -> None:
        """One forward pass: every busy slot feeds its pending token, and greedy slots also their drafted tokens
        (prompt lookup); a slot keeps the drafts the model agrees with, plus the model's next token."""
        rows = [i for i, s in enumerate(self.busy) if s is not None]
        drafting = self.draft_rows is None or len(rows) <= self.draft_rows
        drafts = [self._draft(s) if drafting else [] for s in self.busy]
        width = 1 + max(map(len, drafts))
        self._make_room(0, width)
        live = torch.tensor([s is not None for s in self.busy], device=self.device)
        ids = self.next_tok[:, None].repeat(1, width)
        for i, d in enumerate(drafts):
            if d:
                ids[i, 1 : 1 + len(d)] = torch.tensor(d)
        self.valid[~live, self.start : self.end] = False
        # Queries see the live columns, and the new block causally (an idle slot sees its own column, so no row of
        # the attention is empty).
        block = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        mask = torch.cat(
            [
                self.valid[:, None, None, self.start : self.end].expand(-1, 1, width, -1),
                block.expand(len(self.busy), 1, width, width),
            ],
            dim=-1,
        )
        if not self.bool_mask:  # eager attention adds its mask: 0 where seen, the dtype's minimum elsewhere
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min
            )
        positions = self.pos[:, None] + torch.arange(width, device=self.device)
        logits = step_logits(self.model, ids, mask, positions, cache, self.cache_kw)
        self.valid[:, self.end : self.end + width] = True
        used = 1  # the most columns a continuing row keeps (1 where none continues): past it, only rejected drafts
        if width == 1:
            chosen = self._choose(logits[rows, -1].float(), [self.busy[i] for i in rows])[:, None]
        else:  # drafting only happens when every busy slot is greedy; the argmax before the row selection, which
            # would copy the logits (~3 ms a step at 16 x 5 x 49k)
            chosen = _argmax(logits)[rows]
        for i, row in zip(rows, chosen.tolist()):
            d, seq = drafts[i], self.busy[i]
            kept = 0
            while kept < len(d) and d[kept] == row[kept]:
                kept += 1
            self.drafted += len(d)
            self.accepted += kept
            # the model's tokens up to the first draft it disagrees with: the drafts it confirmed, then its own
            if any(self._take(seq, tok) for tok in row[: kept + 1]):
                if self.prefixes is not None:
                    # the rejected drafts' columns are not this sequence's: mask them before reading its columns
                    self.valid[i, self.end + kept + 1 : self.end + width] = False
                    self.valid[i, self.end : self.end + kept + 1] = True
                    self._keep(i, seq, self.end + width)
                self.busy[i] = None
                continue
            self.next_tok[i] = row[kept]
            self.pos[i] += kept + 1
            self.valid[i, self.end + kept + 1 : self.end + width] = False  # the rejected drafts' columns
            used = max(used, kept + 1)
        # The next step writes over the columns no row kept: the cache grows by the most tokens a row took, not by the
        # block (else every later step's attention spans every draft ever rejected).
        self.end += used
        if any(s is not None for s in self.busy):  # the live columns begin where the earliest busy row does
            busy = torch.tensor([s is not None for s in self.busy])
            self.start = max(self.start, int(self.row_start[busy].min()))

    def _draft(self, seq: _Sequence | None) -> list[int]:
        """Prompt lookup: the tokens that followed the latest earlier occurrence of the sequence's last 3 (else 2,
        else 1) tokens, in its prompt or its own output. Greedy slots only, and only when all busy slots are greedy
        (a sampled token cannot be checked against a draft by comparison); _step asks only while at most
        ``draft_rows`` rows are busy."""
        if seq is None or self.lookahead == 0 or not self.all_greedy:
            return []
        job = self.jobs[seq.job]
        room = job.max_tokens - len(seq.tokens) - 1
        return seq.index.draft(min(self.lookahead, room)) if room > 0 else []

    def _choose(self, logits: torch.Tensor, seqs: list[_Sequence]) -> torch.Tensor:
        """Greedy rows take the argmax; sampled rows draw from temperature / top-p with their own generator
        (top-p as transformers' TopPLogitsWarper: the smallest set of tokens whose probability reaches top_p).

        A draw is one uniform number from the row's generator, mapped through the row's cumulative distribution:
        ``torch.multinomial`` draws an exponential for every vocabulary entry instead, ~20% of a sampled decoding
        step of SmolLM2 on a CPU (49k entries a row)."""
        chosen = _argmax(logits)
        rows = [r for r, seq in enumerate(seqs) if self.jobs[seq.job].temperature > 0]
        if not rows:
            return chosen
        jobs = [self.jobs[seqs[r].job] for r in rows]
        temperature = torch.tensor([job.temperature for job in jobs], device=logits.device)
        probs = torch.softmax(logits[rows].float() / temperature[:, None], -1)
        for i, job in enumerate(jobs):
            if job.top_p < 1.0:
                sorted_probs, order = probs[i].sort()
                drop = sorted_probs.cumsum(-1) <= 1 - job.top_p
                drop[-1] = False
                probs[i] = probs[i].scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
        cdf = probs.cumsum(-1)
        u = torch.cat([torch.rand(1, generator=seqs[r].generator, device=logits.device) for r in rows])
        # right=True: the first token whose cumulative probability exceeds u, so a token of probability 0 is never
        # drawn (its cumulative value equals its predecessor's)
        drawn = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
        chosen[rows] = drawn.clamp(max=probs.shape[-1] - 1)
        return chosen

    def _take(self, seq: _Sequence, tok: int) -> bool:
        """Add a chosen token to its sequence; True when the sequence is finished (and recorded)."""
        job = self.jobs[seq.job]
        hit_eos = tok in self.eos_ids
        if not hit_eos:
            seq.tokens.append(tok)
            if seq.index is not None:
                seq.index.extend([tok])
        hit_stop = bool(job.stop) and not hit_eos and self._stopped(seq.tokens, job.stop)
        if not (hit_eos or hit_stop or len(seq.tokens) >= job.max_tokens):
            return False
        self.results[seq.job][seq.sample] = Finished(seq.tokens, hit_eos, hit_stop, time.perf_counter() - seq.started)
        self.left[seq.job] -= 1
        if self.left[seq.job] == 0:
            self.on_done(seq.job, self.results[seq.job])  # type: ignore[arg-type]
        return True

    def _stopped(self, tokens: list[int], stop: tuple[str, ...]) -> bool:
        # The new token can complete a stop string that began a few tokens back (a token is at least a byte).
        text = self.tail_text(tokens[-(4 * max(map(len, stop)) + 2) :])
        return any(s and s in text for s in stop)


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """The last axis's argmax. ``max``'s indices are the same (the first of equal maxima, as argmax) and take a
    fifth of ``argmax``'s time on a CPU in bf16 (1.6 against 7.6 ms for 16 x 5 x 49k logits; 1.9 times in fp32)."""
    return logits.max(-1).indices


def _generator(job: Job, sample: int, device: torch.device) -> torch.Generator | None:
    if job.temperature <= 0:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(job.seed * 100_003 + job.first_sample + sample)
    return g
