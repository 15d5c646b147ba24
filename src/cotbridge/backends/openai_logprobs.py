"""Log-probs in the OpenAI API's shapes (and vLLM's ``prompt_logprobs``), for ``cotbridge serve``.

- ``/v1/completions`` with ``logprobs: N``: each choice's ``logprobs`` holds ``tokens``, ``token_logprobs``,
  ``top_logprobs`` (N entries a token, by token string) and ``text_offset`` (where each token begins in the choice's
  ``text``); with ``echo`` the prompt's tokens come first, the first of them without a log-prob (nothing precedes
  it). This is what log-likelihood evaluation sends (lm-evaluation-harness: echo, max_tokens 1, logprobs 1).
- ``/v1/completions`` with ``prompt_logprobs: K`` (vLLM): each choice's ``prompt_logprobs`` holds, per prompt token,
  ``None`` for the first, then ``{token id: {logprob, rank, decoded_token}}`` for the token itself and the K most
  likely there. TRL's VLLMClient.get_sequence_logprobs reads a teacher's grades of a student's tokens this way.
- ``/v1/chat/completions`` with ``logprobs: true, top_logprobs: N``: each choice's ``logprobs.content`` lists
  ``{token, logprob, bytes, top_logprobs}`` per completion token.

The numbers come from a forward pass of the served model over the prompt and the generated tokens
(backends/token_logprobs.py): the model's own distribution, before temperature and top-p, as vLLM's default.
"""

from __future__ import annotations

from typing import Any

from cotbridge.backends.base import Completion, Request, truncate_at_stop
from cotbridge.backends.openai_requests import Extras
from cotbridge.backends.openai_wire import ROUTES, BadRequest
from cotbridge.backends.token_logprobs import TokenLogprob, text_offsets, token_strings, tokens_within


def prepare(backend: Any, reqs: list[Request], extras: Extras) -> None:
    """Check that ``backend`` can do what ``reqs`` ask, fill token-id prompts' text, ask for completion token ids."""
    token_prompts = any(r.prompt_ids is not None for r in reqs)
    if (extras.scored or token_prompts) and not hasattr(backend, "score"):
        param = "prompt" if token_prompts and not extras.scored else "logprobs"
        raise BadRequest(
            f"this server's backend ({getattr(backend, 'kind', type(backend).__name__)}) gives no token log-probs and "
            "takes text prompts only; serve a local model (cotbridge serve MODEL) for logprobs, echo and token ids",
            param,
        )
    for r in reqs:
        if r.prompt_ids is not None:
            bad = next((t for t in r.prompt_ids if not 0 <= t < backend.vocab_size), None)
            if bad is not None:
                raise BadRequest(
                    f"prompt holds token id {bad}, outside this model's 0..{backend.vocab_size - 1}", "prompt"
                )
            r.prompt = backend.tokenizer.decode(r.prompt_ids, skip_special_tokens=False)
        r.token_ids = extras.scored


def fused(backend: Any, req: Request, extras: Extras) -> bool:
    """One new token of one sample, scored: the forward pass that scores the prompt also chooses the token, so the
    request costs one pass, not a generation and a scoring pass (TRL's teacher grading and lm-eval's
    log-likelihood requests are all of this kind: max_tokens 1)."""
    return extras.scored and req.max_tokens == 1 and req.n == 1 and hasattr(backend, "score")


def generate(backend: Any, reqs: list[Request], generate_fn: Any, extras: Extras) -> list[list[Completion]]:
    """``generate_fn(reqs)`` for the requests that ask for new tokens; a request for 0 (scoring its prompt alone)
    gets ``n`` empty completions without a generation, and a ``fused`` one is left empty for ``choice_scores``."""
    asking = [i for i, r in enumerate(reqs) if r.max_tokens > 0 and not fused(backend, r, extras)]
    made = generate_fn([reqs[i] for i in asking]) if asking else []
    out: list[list[Completion]] = [[] for _ in reqs]
    for i, comps in zip(asking, made):
        out[i] = comps
    for i, r in enumerate(reqs):
        if r.max_tokens == 0:
            prompt_tokens = len(backend.encode([r])[0]) if hasattr(backend, "encode") else 0
            out[i] = [Completion("", "length", prompt_tokens, 0, extra={"token_ids": []}) for _ in range(r.n)]
    return out


def choice_scores(
    route: str, backend: Any, reqs: list[Request], comps: list[list[Completion]], extras: Extras
) -> list[list[dict[str, Any]]]:
    """The log-prob fields of each choice, and ``echo_text``: the prompt an echoed choice begins with. A ``fused``
    request's completion is made here, into ``comps``."""
    chat = route == ROUTES["chat"]
    top_n = max(extras.logprobs or 0, extras.prompt_logprobs or 0)
    prompts = backend.encode(reqs) if extras.scored else [[] for _ in reqs]
    out: list[list[dict[str, Any]]] = []
    for i, (req, prompt_ids) in enumerate(zip(reqs, prompts)):
        if extras.scored and fused(backend, req, extras):
            ids, entries = _one_token(backend, req, prompt_ids, top_n, comps[i])
            kept, scored = [ids], [entries]
        else:
            kept = [_kept_ids(backend, req, c) for c in comps[i]] if extras.scored else [[] for _ in comps[i]]
            scored = backend.score([prompt_ids + ids for ids in kept], top_n) if extras.scored else None
        fields = []
        for j, ids in enumerate(kept):
            entries = scored[j] if scored is not None else []
            f: dict[str, Any] = {"logprobs": None}
            if chat and extras.logprobs is not None:
                f["logprobs"] = {"content": _chat_content(backend, ids, entries[len(prompt_ids) :], extras.logprobs)}
            elif extras.logprobs is not None:
                first = 0 if extras.echo else len(prompt_ids)
                shown = (prompt_ids if extras.echo else []) + ids
                f["logprobs"] = _completion_logprobs(backend, shown, entries[first:], extras.logprobs)
            if extras.echo:
                f["echo_text"] = req.prompt or ""
            if extras.prompt_logprobs is not None:
                f["prompt_logprobs"] = _prompt_logprobs(backend, entries[: len(prompt_ids)], extras.prompt_logprobs)
            fields.append(f)
        out.append(fields)
    return out


def _one_token(
    backend: Any, req: Request, prompt_ids: list[int], top_n: int, into: list[Completion]
) -> tuple[list[int], list[TokenLogprob | None]]:
    """Score the prompt and choose the token after it in one pass; the completion goes ``into`` the request's list
    (an end-of-sequence token ends it empty, as generation does)."""
    from cotbridge.backends.token_logprobs import next_token_picker

    picker = next_token_picker(req.temperature, req.top_p, req.seed * 100_003 + req.first_sample)
    (entries,) = backend.score([prompt_ids], top_n, pick=[picker])
    token = entries[-1].token
    if token in backend.stop_ids:
        ids, entries, text, finish = [], entries[:-1], "", "stop"
    else:
        ids, text, finish = [token], backend.tokenizer.decode([token], skip_special_tokens=True), "length"
    into[:] = [Completion(text, finish, len(prompt_ids), 1, extra={"token_ids": ids})]
    return ids, entries


def _kept_ids(backend: Any, req: Request, c: Completion) -> list[int]:
    """The completion's token ids up to the text it answers (cut where a stop string cut the text)."""
    ids = list(c.extra.get("token_ids") or [])
    text, _ = truncate_at_stop(c.text, req.stop)
    strings = token_strings(backend.tokenizer, ids)
    return ids[: tokens_within(strings, len(text))] if sum(map(len, strings)) > len(text) else ids


def _completion_logprobs(
    backend: Any, shown: list[int], entries: list[TokenLogprob | None], top_n: int
) -> dict[str, Any]:
    strings = token_strings(backend.tokenizer, shown)
    return {
        "tokens": strings,
        "token_logprobs": [e.logprob if e is not None else None for e in entries],
        "top_logprobs": [_by_string(backend, e.top[:top_n]) if e is not None else None for e in entries],
        "text_offset": text_offsets(strings),
    }


def _by_string(backend: Any, top: list[tuple[int, float]]) -> dict[str, float]:
    """The top tokens keyed by their text, as the completions API does. Two ids can decode alike (pieces of
    multi-byte characters all read U+FFFD): the likelier one keeps the key."""
    out: dict[str, float] = {}
    for t, lp in top:  # best first
        out.setdefault(backend.tokenizer.decode([t]), lp)
    return out


def _chat_content(backend: Any, ids: list[int], entries: list[TokenLogprob | None], top_n: int) -> list[dict]:
    def item(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    content = []
    for tok, e in zip(token_strings(backend.tokenizer, ids), entries):
        assert e is not None  # a completion token always follows the prompt
        top = [item(backend.tokenizer.decode([t]), lp) for t, lp in e.top[:top_n]]
        content.append({**item(tok, e.logprob), "top_logprobs": top})
    return content


def _prompt_logprobs(backend: Any, entries: list[TokenLogprob | None], top_n: int) -> list[dict | None]:
    """vLLM's shape: the token itself and the ``top_n`` most likely, by token id (as a string), ranked from 1."""
    out: list[dict | None] = []
    for e in entries:
        if e is None:
            out.append(None)
            continue
        position: dict[str, dict[str, Any]] = {}
        for rank, (t, lp) in enumerate(e.top[:top_n], start=1):
            position[str(t)] = {"logprob": lp, "rank": rank, "decoded_token": backend.tokenizer.decode([t])}
        position.setdefault(
            str(e.token), {"logprob": e.logprob, "rank": e.rank, "decoded_token": backend.tokenizer.decode([e.token])}
        )
        out.append(position)
    return out
