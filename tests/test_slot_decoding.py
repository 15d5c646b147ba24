"""Decoding in slots (backends/slot_decoding.py) against transformers' generate() on a tiny random model, in fp32
so that both paths compute the same numbers."""

from __future__ import annotations

import warnings

import pytest

from cotbridge.backends.base import Request
from cotbridge.backends.hf import HFBackend
from cotbridge.errors import UserError
from tests.test_hf_backend import PROMPTS


def backend(model_dir, **kw) -> HFBackend:
    return HFBackend(str(model_dir), dtype="float32", **kw)


def outcomes(out, with_tokens: bool = True):
    return [[(c.text, c.finish_reason, c.completion_tokens if with_tokens else None) for c in cs] for cs in out]


def test_greedy_slots_generate_what_generate_does_with_refills(tiny_model_dir):
    slots = backend(tiny_model_dir, batch_size=3)  # fewer slots than requests: finished rows are refilled
    batches = backend(tiny_model_dir, batch_size=8, decoding="batches")
    assert slots.decoding == "slots"  # "auto" picks it for a Llama
    reqs = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS * 2, [5, 40, 12, 70, 3, 25, 60, 9])]
    assert outcomes(slots.generate(reqs, progress=False)) == outcomes(batches.generate(reqs, progress=False))
    # a stop string ends the row in both; generate() may spend a few more tokens before it notices
    free = slots.generate([Request(prompt=PROMPTS[1], max_tokens=30)], progress=False)[0][0].text
    stopped = [Request(prompt=p, max_tokens=30, stop=[free[6:9]]) for p in PROMPTS]
    a, b = slots.generate(stopped, progress=False), batches.generate(stopped, progress=False)
    assert outcomes(a, with_tokens=False) == outcomes(b, with_tokens=False)
    assert a[1][0].finish_reason == "stop" and a[1][0].text == free[: free.index(free[6:9])]


def test_each_sample_is_the_same_whatever_shares_its_batch(tiny_model_dir):
    reqs = [Request(prompt=p, n=4, temperature=1.0, top_p=0.9, max_tokens=10, seed=3) for p in PROMPTS[:3]]
    narrow = backend(tiny_model_dir, batch_size=2).generate(reqs, progress=False)
    wide = backend(tiny_model_dir, batch_size=12).generate(reqs, progress=False)
    assert outcomes(narrow) == outcomes(wide)
    assert len({c.text for c in narrow[0]}) > 1  # the samples of one prompt differ
    # sample i is seeded by (seed, i): asking for samples 2..3 alone gives the same two
    [tail] = backend(tiny_model_dir, batch_size=4).generate(
        [Request(prompt=PROMPTS[0], n=2, first_sample=2, temperature=1.0, top_p=0.9, max_tokens=10, seed=3)],
        progress=False,
    )
    assert [c.text for c in tail] == [c.text for c in narrow[0][2:]]
    other_seed = backend(tiny_model_dir, batch_size=4).generate(
        [Request(prompt=PROMPTS[0], n=4, temperature=1.0, top_p=0.9, max_tokens=10, seed=4)], progress=False
    )
    assert [c.text for c in other_seed[0]] != [c.text for c in narrow[0]]


def test_top_p_keeps_the_smallest_set_that_reaches_it(tiny_model_dir):
    b = backend(tiny_model_dir, batch_size=4)
    greedy = b.generate([Request(prompt=p, max_tokens=12) for p in PROMPTS], progress=False)
    nucleus_of_one = b.generate(
        [Request(prompt=p, n=2, temperature=1.0, top_p=1e-6, max_tokens=12) for p in PROMPTS], progress=False
    )
    assert [[c.text for c in cs] for cs in nucleus_of_one] == [[cs[0].text] * 2 for cs in greedy]


def test_a_prompt_is_prefilled_once_for_all_its_samples(tiny_model_dir):
    b = backend(tiny_model_dir, batch_size=16)
    reqs = [Request(prompt=p, n=8, temperature=1.0, max_tokens=6) for p in PROMPTS[:2]]
    out = b.generate(reqs, progress=False)
    assert [len(cs) for cs in out] == [8, 8]
    assert b.stats["prefill_tokens"] == sum(c[0].prompt_tokens for c in out)  # not 8x


def test_finished_rows_stop_costing(tiny_model_dir):
    long = Request(prompt=PROMPTS[1], max_tokens=30)  # the longest prompt: placed first
    short = [Request(prompt=p, max_tokens=2) for p in PROMPTS * 2]
    b = backend(tiny_model_dir, batch_size=2, lookahead=0)  # one token per step
    out = b.generate([long, *short], progress=False)
    assert out[0][0].completion_tokens == 30 and all(cs[0].completion_tokens == 2 for cs in out[1:])
    # while the long row takes its 29 steps (its first token comes with the prefill), the eight short ones pass
    # through the other slot; generate() in batches of two would take 29 + 4 steps
    assert b.stats["steps"] == 29


def test_prompt_lookup_drafts_change_nothing_but_the_number_of_steps(tiny_model_dir):
    reqs = [Request(prompt=p * 3, max_tokens=60) for p in PROMPTS]  # repeated text gives the lookup material
    plain = backend(tiny_model_dir, batch_size=4, lookahead=0)
    drafting = backend(tiny_model_dir, batch_size=4, lookahead=4)
    assert outcomes(drafting.generate(reqs, progress=False)) == outcomes(plain.generate(reqs, progress=False))
    assert drafting.stats["accepted"] > 0 and drafting.stats["steps"] < plain.stats["steps"]
    assert drafting.stats["accepted"] <= drafting.stats["drafted"]


def test_drafts_are_checked_only_while_few_rows_are_busy(tiny_model_dir):
    # one long row among short ones: while 4 rows are busy no step drafts; the long row drafts alone at the end
    reqs = [Request(prompt=PROMPTS[0] * 3, max_tokens=60)] + [Request(prompt=p * 3, max_tokens=8) for p in PROMPTS]
    always = backend(tiny_model_dir, batch_size=4, lookahead=4)
    always.draft_rows = None  # at every step, whatever this CPU's default
    few = backend(tiny_model_dir, batch_size=4, lookahead=4, draft_rows=1)
    never = backend(tiny_model_dir, batch_size=4, lookahead=4, draft_rows=0)
    expected = outcomes(backend(tiny_model_dir, batch_size=4, lookahead=0).generate(reqs, progress=False))
    for b in (always, few, never):
        assert outcomes(b.generate(reqs, progress=False)) == expected
    assert never.stats["drafted"] == 0
    assert 0 < few.stats["drafted"] < always.stats["drafted"]
    assert always.stats["steps"] < few.stats["steps"] < never.stats["steps"]


def test_draft_rows_follow_the_hardware(tiny_model_dir, monkeypatch):
    import torch

    from cotbridge.backends import hf

    model = backend(tiny_model_dir).model
    monkeypatch.setattr(hf, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    assert hf.drafting_rows(model) == hf.DRAFT_ROWS_COMPUTE_BOUND  # fp32: AVX-512 products, not the tiles
    assert hf.drafting_rows(model.to(torch.bfloat16)) is None  # a block of 5 positions a row costs little more than 1
    monkeypatch.setattr(hf, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert hf.drafting_rows(model) == hf.DRAFT_ROWS_COMPUTE_BOUND
    assert backend(tiny_model_dir, draft_rows=3).draft_rows == 3


def test_rejected_drafts_do_not_grow_the_cache(tiny_model_dir, monkeypatch):
    """The cache's write column advances by the tokens a step kept (the most any row kept), not by the block: the
    next step writes over the columns every row rejected."""
    from cotbridge.backends import slot_decoding

    ends = []
    original = slot_decoding.SlotDecoder._step

    def step(self, cache):
        before = self.end
        original(self, cache)
        ends.append(self.end - before)

    monkeypatch.setattr(slot_decoding.SlotDecoder, "_step", step)
    b = backend(tiny_model_dir, batch_size=1, lookahead=4)
    b.generate([Request(prompt=PROMPTS[2], max_tokens=40)], progress=False)  # little to look up: most rejected
    monkeypatch.undo()
    assert b.stats["drafted"] > b.stats["accepted"]
    # a column per token taken (the last step's drafts aside), where a step's whole block would add them all
    steps, accepted, drafted = b.stats["steps"], b.stats["accepted"], b.stats["drafted"]
    assert steps <= sum(ends) <= steps + accepted < steps + drafted


def test_no_deprecated_generate_arguments(tiny_model_dir):
    b = backend(tiny_model_dir, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b.generate([Request(prompt=p, max_tokens=8) for p in PROMPTS], progress=False)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_decoding_choice_is_checked(tiny_model_dir):
    with pytest.raises(UserError, match="decoding must be one of"):
        backend(tiny_model_dir, decoding="paged")


def test_auto_dtype_is_bf16_for_generation_only_where_the_cpu_has_it(monkeypatch):
    import torch

    from cotbridge.models import loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, generation, expected in [
        (True, True, torch.bfloat16),
        (True, False, torch.float32),  # training keeps fp32 weights (bf16 autocast is its own switch)
        (False, True, torch.float32),  # emulated bf16 is slower than fp32
    ]:
        monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda native=native: native)
        assert loading.resolve_dtype("auto", generation=generation) == expected
    assert loading.resolve_dtype("float32", generation=True) == torch.float32
    with pytest.raises(UserError, match="dtype must be"):
        loading.resolve_dtype("fp8")


def test_stage_two_prefills_only_what_follows_stage_one(tiny_model_dir):
    """A two-stage call: stage 2's prompts repeat stage 1's prompt and output; with the kept keys/values only the
    answer trigger is pre-filled."""
    from cotbridge.inference.two_stage import generate_two_stage

    first = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS, [20, 9, 30, 14])]

    def ask(i, req, rationale):
        return Request(prompt=req.prompt + rationale + " Therefore, the answer is", max_tokens=6)

    for lookahead in (0, 4):
        kept = backend(tiny_model_dir, batch_size=3, lookahead=lookahead)
        samples = generate_two_stage(kept, first, ask, progress=False)
        assert kept.stats["reused_tokens"] > 0 and kept.prefixes is None  # used, then dropped with the call
        fresh = backend(tiny_model_dir, batch_size=3, lookahead=lookahead)
        fresh.generate([s[0].answer_request for s in samples], progress=False)
        assert fresh.stats["reused_tokens"] == 0
        assert kept.stats["prefill_tokens"] < fresh.stats["prefill_tokens"]


def test_a_stored_prefix_gives_what_a_full_prefill_gives(tiny_model_dir):
    """The next-token distribution and the keys/values of a prompt pre-filled after a stored prefix equal those of
    a full pre-fill (up to float rounding: the attention is split differently, so greedy answers of a random tiny
    model can flip at near-ties; the distribution is what must not change)."""
    import torch

    from cotbridge.backends.slot_decoding import Job, SlotDecoder
    from cotbridge.backends.token_reuse import PrefixStore

    b = backend(tiny_model_dir)
    prompt = b.tokenizer(PROMPTS[1] + PROMPTS[3], add_special_tokens=False)["input_ids"]
    dec = SlotDecoder(b.model, slots=2, eos_ids=set(), pad_id=b.tokenizer.pad_token_id, tail_text=lambda ids: "")
    dec.jobs = [Job(prompt)]
    with torch.inference_mode():
        logits, kv, _ = dec._prefill([0])[0]
        store = PrefixStore()
        n = len(prompt) - 7
        store.add(prompt[:n], kv[..., :n, :].clone())
        stored, found = store.longest(prompt)
        assert found == n
        after_logits, after_kv, mask = dec._prefill_after(0, stored, found)
    assert torch.allclose(after_logits, logits, atol=1e-5) and torch.allclose(after_kv, kv, atol=1e-5)
    assert bool(mask.all()) and dec.reused_tokens == n


def test_eager_attention_gets_an_additive_mask_and_the_same_outputs(tiny_model_dir):
    reqs = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS, [5, 30, 12, 20])]
    slots = backend(tiny_model_dir, batch_size=3)
    batches = backend(tiny_model_dir, batch_size=3, decoding="batches")
    for b in (slots, batches):
        b.model.config._attn_implementation = "eager"
    assert outcomes(slots.generate(reqs, progress=False)) == outcomes(batches.generate(reqs, progress=False))


class PoisonedTorch:
    """``torch`` as slot_decoding sees it, but ``empty`` returns NaNs: what reused memory may hold."""

    def __init__(self):
        import torch

        self.torch = torch

    def __getattr__(self, name):
        return getattr(self.torch, name)

    def empty(self, *args, **kw):
        return self.torch.full(args[0] if len(args) == 1 else args, float("nan"), **kw)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_columns_never_written_do_not_reach_the_outputs(tiny_model_dir, monkeypatch, attention):
    """Prompts placed at different times leave columns of the key/value buffers that a slot never wrote (masked);
    a masked NaN still turns the attention into NaN, so what the memory held before must never be read. Found on
    SmolLM2 in bf16, where a run after another model's generation answered nothing in 60 of 64 samples."""
    from cotbridge.backends import slot_decoding
    from cotbridge.inference.two_stage import generate_two_stage

    def ask(i, req, rationale):
        return Request(prompt=req.prompt + rationale + " Therefore, the answer is", max_tokens=6)

    def run(b):
        greedy = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS * 2, [5, 40, 12, 30, 3, 25, 20, 9])]
        sampled = [Request(prompt=p, n=3, temperature=1.0, max_tokens=m, seed=1) for p, m in zip(PROMPTS, [9, 30, 4])]
        two_stage = generate_two_stage(b, sampled, ask, progress=False)
        answers = [[(s.answer.text, s.answer.finish_reason) for s in group] for group in two_stage]
        return outcomes(b.generate(greedy, progress=False)), answers

    clean = backend(tiny_model_dir, batch_size=4, lookahead=4)  # draft blocks attend through their own function
    clean.model.config._attn_implementation = attention
    expected = run(clean)
    monkeypatch.setattr(slot_decoding, "torch", PoisonedTorch())
    assert run(clean) == expected


@pytest.mark.parametrize("top_p,expected", [(1.0, [0.1, 0.2, 0.3, 0.4]), (0.5, [0.0, 0.0, 3 / 7, 4 / 7])])
def test_sampled_rows_draw_from_the_temperature_and_top_p_distribution(top_p, expected):
    """One uniform number per row through the row's cumulative distribution: the frequencies over 8,000 rows (each
    its own generator) match the probabilities, and tokens that top-p removes are never drawn."""
    import math
    from types import SimpleNamespace

    import torch

    from cotbridge.backends.slot_decoding import Job, SlotDecoder, _generator

    rows = 8000
    job = Job([0], temperature=0.5, top_p=top_p, seed=7)
    # temperature 0.5 squares the probabilities: logits of sqrt(p) give p
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).sqrt().log().repeat(rows, 1)
    seqs = [SimpleNamespace(job=0, generator=_generator(job, i, torch.device("cpu"))) for i in range(rows)]
    drawn = SlotDecoder._choose(SimpleNamespace(jobs=[job]), logits, seqs)
    freq = torch.bincount(drawn, minlength=4).double() / rows
    for f, p in zip(freq.tolist(), expected):
        assert abs(f - p) <= 4 * math.sqrt(p * (1 - p) / rows) + 1e-12
    again = SlotDecoder._choose(
        SimpleNamespace(jobs=[job]),
        logits[:5],
        [SimpleNamespace(job=0, generator=_generator(job, i, "cpu")) for i in range(5)],
    )
    assert again.tolist() == drawn[:5].tolist()  # a row's draw depends on its seed only


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_greedy_choice_is_argmax_with_its_first_of_equal_maxima(dtype):
    import torch

    from cotbridge.backends.slot_decoding import _argmax

    logits = torch.randint(0, 3, (16, 5, 4096)).to(getattr(torch, dtype))  # many equal maxima in every row
    logits[0, 0] = 0
    logits[0, 0, [7, 100]] = 5  # two equal maxima: the first one is chosen
    chosen = _argmax(logits)
    assert torch.equal(chosen, logits.argmax(-1)) and chosen[0, 0] == 7


def test_a_prefix_all_prompts_share_is_prefilled_once_and_changes_no_output(tiny_model_dir):
    exemplar = "Q: Tom has 3 apples and buys 4 more. How many apples? A: 3 + 4 = 7. The answer is 7.\n\n"
    reqs = [Request(prompt=exemplar + p, max_tokens=m) for p, m in zip(PROMPTS * 2, [5, 40, 12, 30, 3, 25, 20, 9])]
    slots = backend(tiny_model_dir, batch_size=8)  # all eight pre-filled together
    out = slots.generate(reqs, progress=False)
    batches = backend(tiny_model_dir, batch_size=8, decoding="batches")
    expected = outcomes(batches.generate(reqs, progress=False))
    assert outcomes(out) == expected
    # refills of two or three prompts beside rows still decoding: each keeps its shared columns
    refilled = backend(tiny_model_dir, batch_size=3)
    assert outcomes(refilled.generate(reqs, progress=False)) == expected
    assert refilled.stats["reused_tokens"] > 0
    # a short prompt padded after the shared prefix outlives the long one beside it: its prefix columns stay seen
    pair = [Request(prompt=exemplar + PROMPTS[1], max_tokens=2), Request(prompt=exemplar + PROMPTS[2], max_tokens=30)]
    two = backend(tiny_model_dir, batch_size=2)
    assert outcomes(two.generate(pair, progress=False)) == outcomes(batches.generate(pair, progress=False))
    # the exemplar's keys/values were computed once and copied to the other seven rows
    assert slots.stats["prefill_tokens"] + slots.stats["reused_tokens"] == sum(cs[0].prompt_tokens for cs in out)
    assert slots.stats["reused_tokens"] >= 7 * 20


def test_a_kept_prefix_is_extended_for_a_longer_shared_start_and_sliced_for_a_shorter_one(tiny_model_dir):
    """Pre-filling after the kept prefix gives what a prompt's own full pre-fill gives (up to float rounding: the
    attention is split differently), and only tokens not yet kept are pre-filled."""
    import torch

    from cotbridge.backends.slot_decoding import Job, SlotDecoder
    from cotbridge.backends.token_reuse import common_length, shared_prefix

    b = backend(tiny_model_dir)
    exemplar = "Q: Tom has 3 apples and buys 4 more. How many apples? A: 3 + 4 = 7. The answer is 7.\n\n"
    texts = [PROMPTS[0], PROMPTS[1], "Q: Ann has 5 pears and eats 2.", "Q: Ann has 2 dogs and 3 cats.", PROMPTS[2]]
    prompts = [b.tokenizer(exemplar + t, add_special_tokens=False)["input_ids"] for t in texts]
    first, second = shared_prefix(prompts[:2]), shared_prefix(prompts[2:4])
    assert second > first >= 20  # the second pair shares the exemplar and "Q: Ann has"

    def decoder():
        dec = SlotDecoder(b.model, slots=2, eos_ids=set(), pad_id=b.tokenizer.pad_token_id, tail_text=lambda ids: "")
        dec.jobs = [Job(p) for p in prompts]
        return dec

    dec, alone = decoder(), decoder()
    with torch.inference_mode():
        out = dec._prefill([0, 1])
        assert dec.prefill_tokens == first + sum(len(p) - first for p in prompts[:2])
        before = dec.prefill_tokens
        out |= dec._prefill([2, 3])  # the kept exemplar, extended by the pair's longer start
        assert dec.prefill_tokens - before == second - first + sum(len(p) - second for p in prompts[2:4])
        assert dec.kept_prefix_tokens == prompts[2][:second]
        before = dec.prefill_tokens
        out |= dec._prefill([4])  # alone: the part of the kept prefix it begins with is sliced
        kept = common_length(prompts[2][:second], prompts[4])
        assert kept >= first and dec.prefill_tokens - before == len(prompts[4]) - kept
        reference = {j: alone._prefill([j])[j] for j in range(len(prompts))}  # one prompt: nothing shared, kept
    assert alone.reused_tokens == 0
    assert dec.prefill_tokens + dec.reused_tokens == sum(map(len, prompts))
    for j, (logits, kv, mask) in out.items():
        ref_logits, ref_kv, _ = reference[j]
        assert torch.allclose(logits, ref_logits, atol=1e-5)
        assert torch.allclose(kv[:, :, :, mask], ref_kv, atol=1e-5)  # its own columns, left padding dropped


def test_a_shared_start_is_kept_for_later_refills_of_single_prompts(tiny_model_dir):
    exemplar = "Q: Tom has 3 apples and buys 4 more. How many apples? A: 3 + 4 = 7. The answer is 7.\n\n"
    reqs = [Request(prompt=exemplar + p, max_tokens=m) for p, m in zip(PROMPTS * 2, [5, 40, 12, 30, 3, 25, 20, 9])]
    expected = outcomes(backend(tiny_model_dir, batch_size=8, decoding="batches").generate(reqs, progress=False))
    two = backend(tiny_model_dir, batch_size=2)  # two pre-filled together, then mostly one prompt per refill
    out = two.generate(reqs, progress=False)
    assert outcomes(out) == expected
    # the exemplar was pre-filled once in the run: the seven other prompts, refilled alone or in pairs, copied it
    assert two.stats["prefill_tokens"] + two.stats["reused_tokens"] == sum(cs[0].prompt_tokens for cs in out)
    assert two.stats["reused_tokens"] >= 7 * 20


@pytest.mark.parametrize("lookahead, stop", [(0, False), (4, False), (4, True)])
def test_a_finished_sequence_is_stored_up_to_its_last_token(tiny_model_dir, lookahead, stop):
    """Stage 2 of a two-stage call pre-fills only what the stored stage-1 keys/values do not cover: they cover every
    token but the last (or all of them, where the model confirmed a draft past a stop string: the next test), the
    last step's included, and equal a full pre-fill's; also for sequences a stop string ends."""
    import torch

    from cotbridge.backends.slot_decoding import Job, SlotDecoder
    from cotbridge.backends.token_reuse import PrefixStore

    b = backend(tiny_model_dir)
    pad = b.tokenizer.pad_token_id

    def decoder(slots, **kw):
        return SlotDecoder(b.model, slots=slots, eos_ids=set(), pad_id=pad, tail_text=b.tokenizer.decode, **kw)

    def run(jobs):
        dec, done = decoder(2, lookahead=lookahead, prefixes=PrefixStore()), {}
        dec.run(jobs, lambda j, samples: done.__setitem__(j, samples[0]))
        return dec, done

    jobs = [  # prompts long enough for the store (PrefixStore.HEAD tokens at least)
        Job(b.tokenizer(p * 6, add_special_tokens=False)["input_ids"], max_tokens=m)
        for p, m in zip(PROMPTS, [9, 23, 14])
    ]
    dec, done = run(jobs)
    if stop:  # a few characters from the middle of each free completion end it there
        stops = [b.tokenizer.decode(done[j].tokens)[4:7] for j in range(len(jobs))]
        jobs = [Job(job.prompt, max_tokens=job.max_tokens, stop=(s,)) for job, s in zip(jobs, stops)]
        dec, done = run(jobs)
        assert all(done[j].hit_stop for j in range(len(jobs)))
    for j, job in enumerate(jobs):
        tokens = job.prompt + done[j].tokens
        stored = [k for k in dec.prefixes.entries if len(k) >= len(tokens) - 1 and list(k) == tokens[: len(k)]]
        assert len(stored) == 1  # none: stored short of the last step
        full = decoder(1)
        full.jobs = [Job(tokens)]
        with torch.inference_mode():
            _, kv, _ = full._prefill([0])[0]
        n = len(stored[0])
        assert torch.allclose(dec.prefixes.entries[stored[0]], kv[..., :n, :], atol=1e-5)
    if lookahead and not stop:
        assert dec.accepted > 0  # the repeated prompts make drafts the model confirms


def test_a_sequence_a_stop_string_ends_inside_confirmed_drafts_is_stored_whole(tiny_model_dir):
    """Where a stop string ends a sequence at a drafted token the model confirmed, the step fed that token (and the
    drafts after it) as input: the cache holds keys/values for every token of the sequence, and the stored entry
    covers them all, no column past the stop, and equals a full pre-fill's."""
    import torch

    from cotbridge.backends.slot_decoding import Job, SlotDecoder
    from cotbridge.backends.token_reuse import PrefixStore

    b = backend(tiny_model_dir)
    pad, decode = b.tokenizer.pad_token_id, b.tokenizer.decode

    def decoder(slots, cls=SlotDecoder, **kw):
        return cls(b.model, slots=slots, eos_ids=set(), pad_id=pad, tail_text=decode, **kw)

    confirmed: dict[int, set[int]] = {}  # job -> positions in its completion that were drafts the model confirmed

    class Watched(SlotDecoder):
        def _step(self, cache):
            drafts: dict[int, list[int]] = {}
            draft = self._draft
            self._draft = lambda seq: drafts.setdefault(id(seq), draft(seq)) if seq is not None else []
            before = [(s, len(s.tokens)) for s in self.busy if s is not None]
            try:
                super()._step(cache)
            finally:
                del self._draft
            for seq, n in before:
                new, d = seq.tokens[n:], drafts.get(id(seq), [])
                kept = next((t for t, (a, c) in enumerate(zip(new, d)) if a != c), min(len(new), len(d)))
                confirmed.setdefault(seq.job, set()).update(range(n, n + kept))

    def run(jobs, cls=SlotDecoder):
        dec, done = decoder(2, cls, prefixes=PrefixStore()), {}
        dec.run(jobs, lambda j, samples: done.__setitem__(j, samples[0]))
        return dec, done

    prompts = [b.tokenizer(p * 6, add_special_tokens=False)["input_ids"] for p in PROMPTS[:2]]
    jobs = [Job(p, max_tokens=30) for p in prompts]
    _, free = run(jobs, Watched)

    def stop_at(j):
        """(position, stop string): a stop string the completion of job j first contains at a confirmed draft."""
        tokens = free[j].tokens
        for p in sorted(confirmed.get(j, ())):
            upto, before = decode(tokens[: p + 1]), decode(tokens[:p])
            for k in range(3, 9):
                s = upto[-k:]
                if s.strip() and s not in before and upto.startswith(before):
                    return p, s
        return None

    chosen = next(((j, found) for j in range(len(jobs)) if (found := stop_at(j))), None)
    assert chosen is not None  # the repeated prompts make drafts the model confirms
    j, (p, stop) = chosen
    jobs[j] = Job(prompts[j], max_tokens=30, stop=(stop,))
    dec, done = run(jobs)
    tokens = prompts[j] + done[j].tokens
    assert done[j].hit_stop and len(done[j].tokens) == p + 1  # it ended at the confirmed draft
    stored = [k for k in dec.prefixes.entries if list(k) == tokens[: len(k)] and len(k) >= len(tokens) - 1]
    assert [len(k) for k in stored] == [len(tokens)]  # every token, the stop's own included; nothing past it
    full = decoder(1)
    full.jobs = [Job(tokens + [pad])]  # one token more, so that the pre-fill's keys cover all of ``tokens``
    with torch.inference_mode():
        _, kv, _ = full._prefill([0])[0]
    assert torch.allclose(dec.prefixes.entries[stored[0]], kv[..., : len(tokens), :], atol=1e-5)
