"""cotbridge serve as a server that clients can score with (#27.2): log-probs in OpenAI's shapes and vLLM's
prompt_logprobs, echo, token-id prompts, streaming, GET /v1/models/{id}, and a 400 for what it does not do. Each
number is checked against a forward pass of the same model in this process; the clients are the real ones (the
openai SDK, TRL's VLLMClient)."""

import json
import math

import pytest

from cotbridge.backends.hf import HFBackend
from cotbridge.server import running_server
from tests.test_serve import CHAT, WordsBackend, call

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def fp32_backend(tiny_model_dir):
    return HFBackend(str(tiny_model_dir), batch_size=4, dtype="float32")


@pytest.fixture(scope="module")
def served(fp32_backend):
    with running_server(fp32_backend, model_name="tiny") as url:
        yield url


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served, api_key="none", max_retries=0, timeout=60)


def reference(backend, ids):
    """log_softmax of the model's logits at each position: [T-1, V] for the tokens after the first."""
    import torch

    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1)


def test_echo_with_logprobs_scores_the_prompt_as_loglikelihood_evaluation_asks(client, fp32_backend):
    # lm-evaluation-harness's request for a log-likelihood: the context+continuation echoed, one new token, logprobs 1
    ids = fp32_backend.tokenizer("Q: Tom has 3 apples and buys 2 more. A: 5")["input_ids"]
    resp = client.completions.create(model="tiny", prompt=ids, max_tokens=1, echo=True, logprobs=1, temperature=0)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    ref = reference(fp32_backend, ids)
    for pos in range(1, len(ids)):
        assert lp.token_logprobs[pos] == pytest.approx(ref[pos - 1, ids[pos]].item(), abs=1e-4)
        ((best, best_lp),) = lp.top_logprobs[pos].items()  # logprobs=1: the one most likely token there
        assert best_lp == pytest.approx(ref[pos - 1].max().item(), abs=1e-4)
        assert best == fp32_backend.tokenizer.decode([int(ref[pos - 1].argmax())])
    # greedy: the generated token is the prompt's most likely next token, its log-prob the maximum
    assert resp.choices[0].text.startswith(fp32_backend.tokenizer.decode(ids))
    assert lp.token_logprobs[-1] == pytest.approx(max(lp.top_logprobs[-1].values()), abs=1e-5)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


def test_a_text_prompt_and_its_token_ids_score_alike(client, fp32_backend):
    text = "Alice flips the coin. Is it heads up?"
    ids = fp32_backend.tokenizer(text)["input_ids"]
    by_text = client.completions.create(model="tiny", prompt=text, max_tokens=0, echo=True, logprobs=0)
    by_ids = client.completions.create(model="tiny", prompt=[ids, ids], max_tokens=0, echo=True, logprobs=0)
    assert len(by_ids.choices) == 2 and by_ids.choices[0].text == by_text.choices[0].text == text
    assert by_text.choices[0].logprobs.token_logprobs == by_ids.choices[1].logprobs.token_logprobs
    assert by_text.usage.completion_tokens == 0 and by_text.usage.prompt_tokens == len(ids)


def test_completion_logprobs_cover_the_generated_tokens(client, fp32_backend):
    resp = client.completions.create(model="tiny", prompt="Q: 2+2?", max_tokens=6, logprobs=3, temperature=0)
    choice = resp.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.tokens) == resp.usage.completion_tokens
    assert all(
        len(top) <= 3 and abs(lp.token_logprobs[i] - max(top.values())) < 1e-5 for i, top in enumerate(lp.top_logprobs)
    )
    # the same greedy generation in this process, scored by a plain forward pass
    from cotbridge.backends.base import Request

    req = Request(prompt="Q: 2+2?", max_tokens=6, token_ids=True)
    ((made,),) = fp32_backend.generate([req], progress=False)
    ids = fp32_backend.encode([req])[0] + made.extra["token_ids"]
    ref = reference(fp32_backend, ids)
    first = len(ids) - len(lp.tokens)
    assert lp.token_logprobs == pytest.approx([ref[p - 1, ids[p]].item() for p in range(first, len(ids))], abs=1e-4)


def test_chat_logprobs_in_openai_shape(client):
    resp = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "2+2?"}],
        max_tokens=5,
        logprobs=True,
        top_logprobs=4,
        temperature=0,
    )
    content = resp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 4 and t.bytes == list(t.token.encode())
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True) and t.logprob == pytest.approx(tops[0], abs=1e-5)  # greedy


def test_vllm_prompt_logprobs_read_by_trls_client(served, fp32_backend, monkeypatch):
    """TRL's VLLMClient.get_sequence_logprobs (its server-teacher distillation's call) against cotbridge serve: the
    teacher's top-k and the actual token's log-prob over a student's completion, as in-process."""
    vllm_client = pytest.importorskip("trl.generation.vllm_client")
    if not hasattr(vllm_client.VLLMClient, "get_sequence_logprobs"):
        pytest.skip("this TRL's VLLMClient has no get_sequence_logprobs")
    monkeypatch.setattr(vllm_client, "is_vllm_available", lambda: True)  # the client's HTTP needs no vLLM
    tc = vllm_client.VLLMClient(base_url=served.removesuffix("/v1"), connection_timeout=10)
    assert tc.model == "tiny"
    prompt = fp32_backend.tokenizer("Q: Is the coin heads up?")["input_ids"]
    seqs = [prompt + fp32_backend.tokenizer(" yes it is")["input_ids"], prompt + [5, 9, 11]]
    got = tc.get_sequence_logprobs(seqs, [len(prompt)] * 2, top_logprobs=5)
    for b, seq in enumerate(seqs):
        ref = reference(fp32_backend, seq)
        for t, pos in enumerate(range(len(prompt), len(seq))):
            top = ref[pos - 1].topk(5)
            assert got["logprobs"][b][t] == pytest.approx(top.values.tolist(), abs=1e-4)
            assert got["logprob_token_ids"][b][t] == top.indices.tolist()
            assert got["actual_logprobs"][b][t][0] == pytest.approx(ref[pos - 1, seq[pos]].item(), abs=1e-4)
            assert math.isfinite(got["actual_logprobs"][b][t][0])  # the actual token is there even outside the top 5


def test_streaming_gives_the_same_text_and_a_usage_chunk(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, temperature=0)
    plain = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    streamed = list(client.completions.create(model="tiny", prompt="Q:", max_tokens=4, temperature=0, stream=True))
    assert (
        "".join(c.choices[0].text for c in streamed)
        == client.completions.create(model="tiny", prompt="Q:", max_tokens=4, temperature=0).choices[0].text
    )


def test_models_by_id(client):
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    "kwargs, param, message",
    [
        (dict(frequency_penalty=0.5), "frequency_penalty", "only 0 is accepted"),
        (dict(extra_body={"guided_json": {}}), "guided_json", "unsupported parameter 'guided_json'"),
        (dict(logprobs=21), "logprobs", "logprobs must be an integer in [0, 20]"),
        (dict(prompt=[[1, 2, 10**6]]), "prompt", "outside this model's"),
        (dict(max_tokens=0), "max_tokens", "max_tokens must be an integer in [1,"),  # 0 only when scoring the prompt
        (dict(stream_options={"include_usage": True}), "stream_options", "only allowed with stream: true"),
    ],
)
def test_what_it_does_not_do_is_a_400_naming_the_parameter(client, kwargs, param, message):
    args = dict(model="tiny", prompt="Q:", max_tokens=2) | kwargs
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(**args)
    assert e.value.body["param"] == param and message in e.value.body["message"]


def test_neutral_values_of_unsupported_parameters_are_taken(client):
    resp = client.completions.create(
        model="tiny", prompt="Q:", max_tokens=2, frequency_penalty=0, presence_penalty=0, user="u1", logit_bias={}
    )
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_a_backend_without_logprobs_says_so():
    with running_server(WordsBackend()) as url:
        status, _, body = call(url, "/completions", {"prompt": "Q:", "logprobs": 1})
        assert (
            status == 400 and body["error"]["param"] == "logprobs" and "no token log-probs" in body["error"]["message"]
        )
        status, _, body = call(url, "/completions", {"prompt": [1, 2, 3]})
        assert status == 400 and body["error"]["param"] == "prompt"
        status, _, body = call(url, "/chat/completions", {**CHAT, "stream": True}, raw=None)
        assert status == 200  # streaming needs nothing of the backend


def test_the_event_stream_is_well_formed(served):
    import urllib.request

    req = urllib.request.Request(
        served + "/completions",
        data=json.dumps({"prompt": "Q:", "max_tokens": 3, "n": 2, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        events = resp.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1} and all(
        c["object"] == "text_completion" for c in chunks
    )


def test_a_scored_one_token_request_takes_one_pass_and_chooses_as_generation_does(client, fp32_backend, monkeypatch):
    """max_tokens 1 with log-probs (TRL's grading, lm-eval's log-likelihood): the scoring pass also chooses the token,
    greedily the same one generation chooses, and a seeded draw is repeatable."""
    calls = []
    generate = fp32_backend.generate
    monkeypatch.setattr(fp32_backend, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    prompts = ["Q: 2+2?", "Alice flips the coin.", "Tom has 3 apples"]
    for p in prompts:
        fused = client.completions.create(model="tiny", prompt=p, max_tokens=1, logprobs=0, temperature=0)
        assert calls == []  # no generation: one forward pass scored and chose
        plain = client.completions.create(model="tiny", prompt=p, max_tokens=1, temperature=0)
        calls.clear()
        assert fused.choices[0].text == plain.choices[0].text
        assert fused.choices[0].logprobs.tokens == [plain.choices[0].text]
    kw = dict(model="tiny", prompt="Q:", max_tokens=1, logprobs=1, temperature=1.0, seed=7)
    draws = {client.completions.create(**kw).choices[0].text for _ in range(3)}
    assert len(draws) == 1
    others = {client.completions.create(**{**kw, "seed": s}).choices[0].text for s in range(8)}
    assert len(others) > 1  # the seed decides the draw
