"""Inputs that do not fit the model (issue #24): a prompt longer than the context window is never truncated and
never crashes a run. The hf backend does not generate it (finish_reason context_overflow, the reason with both
numbers) and lowers a max_tokens that does not fit; eval records and counts the question as skipped (and wrong);
serve answers a 400 naming prompt / messages before any generation, as vLLM; teach records it and curate never
trains on it. On a tiny Llama whose window is 64 positions."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from cotbridge.backends.base import CONTEXT_OVERFLOW, Request
from cotbridge.backends.context_window import context_window
from cotbridge.backends.hf import HFBackend
from tests.conftest import save_tiny_llama

WINDOW = 64


def save_small_window_model(out):
    """conftest's tiny Llama, saved in ``out`` with a context window of 64 positions."""
    return save_tiny_llama(out, max_positions=WINDOW)


@pytest.fixture(scope="module")
def small_window_dir(tmp_path_factory):
    return save_small_window_model(tmp_path_factory.mktemp("tiny-llama-64"))


@pytest.fixture(scope="module")
def small(small_window_dir):
    return HFBackend(str(small_window_dir), batch_size=4, dtype="float32")


def prompt_tokens(backend, text):
    return len(backend.encode([Request(prompt=text)])[0])


def question_with_prompt_of(backend, low, high):
    """A question whose zero-shot-CoT prompt ("Q: {question}\\nA: Let's think step by step.") has low..high tokens."""
    words = "Tom has apples"
    while prompt_tokens(backend, f"Q: {words}?\nA: Let's think step by step.") < low:
        words += " and apples"
    assert prompt_tokens(backend, f"Q: {words}?\nA: Let's think step by step.") <= high
    return words + "?"


@pytest.fixture(scope="module")
def questions(small):
    """Four GSM8K-shaped questions: two fit, one's answer prompt does not (its rationale prompt does), one's rationale
    prompt does not."""
    medium = question_with_prompt_of(small, 52, 60)  # + the answer trigger (14 tokens) > 64
    return [
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3 + 4 #### 7"},
        {"question": "How many apples?", "answer": "#### 2"},
        {"question": medium, "answer": "#### 5"},
        {"question": "Tom has apples " * 40 + "?", "answer": "#### 9"},
    ]


@pytest.fixture
def data_dir(tmp_path, questions):
    folder = tmp_path / "data" / "gsm8k"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return tmp_path / "data"


# ---------------------------------------------------------------- the window


def test_the_window_comes_from_the_config_and_a_sentinel_is_no_window(small):
    from transformers import BartConfig, GPT2Config, T5Config

    assert small.context_window == WINDOW
    model = lambda config: SimpleNamespace(config=config)  # noqa: E731
    assert context_window(model(GPT2Config(n_positions=128))) == 128
    assert context_window(model(BartConfig(max_position_embeddings=256))) == 256  # learned positions: a window
    assert context_window(model(T5Config(n_positions=512))) is None  # relative positions: nothing to check
    unknown = SimpleNamespace(is_encoder_decoder=False, get_text_config=lambda: SimpleNamespace())
    assert context_window(model(unknown), SimpleNamespace(model_max_length=int(1e30))) is None
    assert context_window(model(unknown), SimpleNamespace(model_max_length=2048)) == 2048


# ---------------------------------------------------------------- the hf backend


@pytest.mark.parametrize("decoding", ["slots", "batches"])
def test_a_prompt_that_does_not_fit_is_skipped_and_max_tokens_capped(small_window_dir, decoding, caplog):
    backend = HFBackend(str(small_window_dir), batch_size=4, dtype="float32", decoding=decoding)
    long_ids = list(range(10, 10 + WINDOW + 6))  # 70 tokens
    requests = [
        Request(prompt="a", prompt_ids=list(range(10, 50)), max_tokens=200),  # 40 tokens: room for 24
        Request(prompt="b", prompt_ids=long_ids, max_tokens=8, n=2),
        Request(prompt="c", prompt_ids=list(range(10, 10 + WINDOW)), max_tokens=4),  # fills the window
        Request(prompt="d", prompt_ids=list(range(10, 10 + WINDOW - 1)), max_tokens=50, token_ids=True),  # room 1
    ]
    results = {}
    with caplog.at_level(logging.WARNING):
        out = backend.generate(requests, progress=False, on_result=lambda i, comps: results.setdefault(i, comps))
    assert sorted(results) == [0, 1, 2, 3]  # every request reported, the skipped ones too
    fits, too_long, full, last = out
    assert all(c.completion_tokens <= WINDOW - 40 for c in fits) and fits[0].finish_reason in ("stop", "length")
    assert len(too_long) == 2 and all(
        c.text == "" and c.finish_reason == CONTEXT_OVERFLOW and c.completion_tokens == 0 for c in too_long
    )
    assert too_long[0].extra["skipped"] == "prompt of 70 tokens does not fit the context window of 64 tokens"
    assert full[0].finish_reason == CONTEXT_OVERFLOW and "64 tokens" in full[0].extra["skipped"]
    assert len(last[0].extra["token_ids"]) <= 1 and last[0].finish_reason in ("stop", "length")
    said = caplog.text
    assert "2 of 4 requests asked for more new tokens than fit the context window of 64 tokens" in said
    assert "2 of 4 requests not generated" in said


# ---------------------------------------------------------------- eval


def test_eval_records_and_counts_questions_that_do_not_fit(small, data_dir, tmp_path, capsys):
    from cotbridge.cli.eval_cmd import print_results
    from cotbridge.evaluation.run import EvalConfig, run_eval

    out = tmp_path / "eval"
    cfg = EvalConfig(model="tiny", tasks=["gsm8k"], data_dir=str(data_dir), max_tokens=6, output=str(out), cache="off")
    summary = run_eval(cfg, backend=small, progress=False)
    records = [json.loads(line) for line in (out / "gsm8k.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["test-0", "test-1", "test-2", "test-3"]  # none left out
    fit, _, answer_overflow, prompt_overflow = records
    assert "skipped" not in fit and fit["samples"][0]["answer_output"] is not None
    # the rationale prompt does not fit: not generated, no answer asked
    n_long = prompt_tokens(small, prompt_overflow["prompt"])
    reason = f"prompt of {n_long} tokens does not fit the context window of 64 tokens"
    assert prompt_overflow["skipped"] == reason and prompt_overflow["correct"] is False
    sample = prompt_overflow["samples"][0]
    assert sample["finish_reason"] == CONTEXT_OVERFLOW and sample["skipped"] == reason and sample["output"] == ""
    assert "answer_output" not in sample and sample["complete"] is False
    # the rationale fit; the answer prompt after it (prompt + rationale + trigger) does not
    assert answer_overflow["skipped"].startswith("answer prompt of ")
    assert answer_overflow["skipped"].endswith("does not fit the context window of 64 tokens")
    assert answer_overflow["samples"][0]["finish_reason"] in ("stop", "length")
    m = summary["results"]["gsm8k"]
    assert m["skipped"] == {
        "count": 2,
        "samples": 2,
        "reason": answer_overflow["skipped"],
        "first_ids": ["test-2", "test-3"],
    }
    assert m["n"] == 4 and m["accuracy"] == sum(r["correct"] for r in records) / 4  # skipped: in n, wrong
    assert json.loads((out / "results.json").read_text())["results"]["gsm8k"]["skipped"] == m["skipped"]
    log = next(p for p in out.glob("*_gsm8k_*.json"))
    stop_reasons = [s["output"]["choices"][0]["stop_reason"] for s in json.loads(log.read_text())["samples"]]
    assert stop_reasons[3] == "model_length"  # Inspect's name for it
    print_results(summary["results"], str(out))
    assert "skipped 2 questions / 2 samples, counted wrong (answer prompt of" in capsys.readouterr().out


def test_eval_refuses_when_no_prompt_fits(small, data_dir, tmp_path):
    from cotbridge.errors import UserError
    from cotbridge.evaluation.run import EvalConfig, run_eval

    long_only = data_dir / "gsm8k" / "test.jsonl"
    long_only.write_text(long_only.read_text().splitlines()[-1] + "\n")
    cfg = EvalConfig(model="tiny", tasks=["gsm8k"], data_dir=str(data_dir), output=str(tmp_path / "e"), cache="off")
    with pytest.raises(UserError, match=r"none of the 1 prompts fits .* context window \(prompt of \d+ tokens does"):
        run_eval(cfg, backend=small, progress=False)
    assert not (tmp_path / "e" / "results.json").exists()


# ---------------------------------------------------------------- serve


@pytest.fixture(scope="module")
def served(small):
    from cotbridge.server import running_server

    with running_server(small, model_name="tiny") as url:
        yield url


def test_serve_refuses_a_prompt_longer_than_the_window_before_generating(small, served, monkeypatch):
    from tests.test_serve import call

    generated = []
    real = small.generate
    monkeypatch.setattr(small, "generate", lambda reqs, **kw: generated.append(reqs) or real(reqs, **kw))
    long_text = "Tom has apples " * 40
    n = prompt_tokens(small, long_text)
    status, _, body = call(served, "/completions", {"model": "tiny", "prompt": long_text, "max_tokens": 4})
    assert status == 400 and body["error"]["param"] == "prompt"
    message = body["error"]["message"]
    assert message.startswith("This model's maximum context length is 64 tokens. However, you requested ")
    assert f"{n} tokens in the prompt" in message
    chat = {"model": "tiny", "messages": [{"role": "user", "content": long_text}], "max_tokens": 4}
    status, _, body = call(served, "/chat/completions", chat)
    assert status == 400 and body["error"]["param"] == "messages" and "64 tokens" in body["error"]["message"]
    # an explicit max_tokens that does not fit beside the prompt: named, with both numbers (vLLM's words)
    short = "Q: Tom has 3 apples."
    k = prompt_tokens(small, short)
    status, _, body = call(served, "/completions", {"model": "tiny", "prompt": short, "max_tokens": 100})
    assert status == 400 and body["error"]["param"] == "max_tokens"
    assert f"you requested {k + 100} tokens ({k} in the prompt, 100 in the completion)" in body["error"]["message"]
    assert generated == []  # every refusal came before any generation
    # without max_tokens: the rest of the window, as vLLM's default
    fitting = {"model": "tiny", "messages": [{"role": "user", "content": "Tom has apples " * 8}]}
    status, _, body = call(served, "/chat/completions", fitting)
    assert status == 200, body
    usage = body["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= WINDOW and len(generated) == 1


# ---------------------------------------------------------------- teach and curate


def test_teach_records_the_skipped_request_and_curate_never_trains_on_it(small, data_dir, tmp_path, caplog):
    from cotbridge.cli.teach import describe
    from cotbridge.curate import CurateSettings, curate_file
    from cotbridge.teach import TeachConfig, TeacherConfig, run_teach

    cfg = TeachConfig(
        task="gsm8k",
        data_dir=str(data_dir),
        teacher=TeacherConfig(backend="hf", model="tiny"),
        mode="zero_shot_cot_single",
        max_tokens=8,
        run_dir=str(tmp_path / "run"),
        cache="off",
    )
    with caplog.at_level(logging.WARNING):
        summary = run_teach(cfg, backend=small, progress=False)
    path = tmp_path / "run" / "teacher" / "gsm8k.jsonl"
    records = {r["example_id"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert len(records) == 4  # recorded, so a rerun does not ask again
    skipped = records["train-3"]
    assert skipped["finish_reason"]["rationale"] == CONTEXT_OVERFLOW and skipped["rationale"] == ""
    assert "does not fit the context window of 64 tokens" in skipped["extra"]["skipped"]
    assert summary["skipped"]["count"] == 1 and summary["skipped"]["first_ids"] == ["train-3"]
    assert "skipped 1 records of 1 questions, not generated (prompt of" in describe(summary)
    assert "1 of 4 records hold no sample" in caplog.text

    # no filter at all: the record that was never generated is still not an example
    stats = curate_file(path, tmp_path / "data", "finetune_cot", "numeric", CurateSettings(filters=[]))
    assert stats["dropped"] == {CONTEXT_OVERFLOW: 1} and stats["kept"] == 3
    trained = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert len(trained) == 3 and all("Tom has apples Tom has apples" not in json.dumps(t) for t in trained)
    assert json.loads((tmp_path / "data" / "curation.json").read_text())["dropped"] == {CONTEXT_OVERFLOW: 1}
    assert "dropped 1 of 4 records the teacher never generated" in caplog.text
