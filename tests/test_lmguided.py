"""The LM-guided CoT workflow end to end with a scripted large model and a tiny from-scratch writer."""

from __future__ import annotations

import json

import pytest

from cotbridge.jsonl import read_json
from cotbridge.recipes.lm_guided.config import LMGuidedConfig
from cotbridge.recipes.lm_guided.recipe import run_lmguided
from cotbridge.recipes.lm_guided.resources import LargeModel
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "multihop").is_dir(), reason="needs ../shared/data/multihop")


def oracle_like(scripted):
    """Right when the rationale names the gold answer; its own CoT names it for every other question."""

    def respond(text, req):
        ex = req.meta["example"]
        stage = req.meta["stage"]
        if stage == "rationale":
            return [f"It is {ex.answer}." if sum(map(ord, ex.id)) % 2 else "I am not sure."] * req.n
        if stage == "answer":
            return [f" {ex.answer}" if ex.answer.lower() in req.meta["rationale"].lower() else " unknown"]
        return [" unknown"]

    return scripted(respond)


def test_workflow_runs_every_stage_and_resumes_without_new_calls(tiny_model_dir, tmp_path, scripted, monkeypatch):
    cfg = LMGuidedConfig.model_validate(
        {
            "run_dir": str(tmp_path / "run"),
            "data_dir": str(SHARED_DATA),
            "large": {"backend": "scripted", "serve": False},
            "context": {"paragraphs": "supporting", "max_paragraph_words": 10},
            "writer": {
                "scratch": {"tokenizer": str(tiny_model_dir), "hidden_size": 16, "layers": 1, "heads": 2},
                "max_tokens": 8,
                "train": {"lora": False, "epochs": 1, "batch_size": 4, "save_strategy": "no", "max_length": 1024},
            },
            "kd": {"train_limit": 4, "min_f1": 0.5},
            "rl": {
                "steps": 1,
                "batch_size": 4,
                "num_generations": 2,
                "train_limit": 2,
                "max_completion_length": 8,
                "weights": {"task": 1.0, "relevance": 0.5},
                "aspect_scorers": {"relevance": "lexical_relevance"},
            },
            "eval": {"limit": 2},
            "score": {"scorers": ["grounding", "flesch", "lexical_relevance"]},
        }
    )
    large = oracle_like(scripted)
    summary = run_lmguided(cfg, large=large, progress=False)
    run = tmp_path / "run"
    kd = [json.loads(line) for line in (run / "data" / "kd.jsonl").read_text().splitlines()]
    curation = read_json(run / "data" / "curation.json")
    # only rationales whose answer was right became training data, with the writer's prompt (context + question ###)
    assert len(kd) == sum(c["kept"] for c in curation.values()) > 0
    assert all(
        c["filters"][-1] == "answer_f1" and c["kept"] + sum(c["dropped"].values()) == c["records"]
        for c in curation.values()
    )
    assert all(ex["completion"].startswith(" It is ") and ex["prompt"].endswith(" ###") for ex in kd)
    res = summary["results"]
    assert list(res) == ["standard", "cot", "kd", "kd_sc", "kd_rl", "kd_rl_sc"]
    assert all(m["n"] == 2 for row in res.values() for m in row.values())
    assert res["standard"]["hotpotqa"]["em"] == 0.0  # the scripted model only knows with a rationale
    sc = [json.loads(line) for line in (run / "eval" / "kd_sc" / "hotpotqa.jsonl").read_text().splitlines()]
    assert all(len(r["samples"]) == 3 for r in sc)
    pooled = summary["aspects"]["pooled"]
    assert "standard" not in pooled and pooled["cot"]["grounding/factuality"]["n"] == 4  # 2 questions x 2 datasets
    assert summary["rl"]["steps"] == 1 and (run / "reward_curve.png").exists()
    report = (run / "report.md").read_text()
    assert "| LM-guided, KD + RL + SC | 3 |" in report and "EM paper" in report and "50.0" in report

    calls = len(large.requests)
    opened = []
    client = LargeModel.client
    monkeypatch.setattr(LargeModel, "client", lambda self: opened.append(1) or client(self))
    again = run_lmguided(cfg, large=large, progress=False)  # everything is on disk: nothing is redone
    assert len(large.requests) == calls and again["results"] == res
    assert opened == []  # nor is the large model loaded (a real one takes seconds; the engine's timing keeps)
    run_lmguided(cfg, from_stage="eval", large=large, progress=False)  # redone from the request cache
    assert len(large.requests) == calls


def test_scratch_writer_with_a_trained_tokenizer(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cotbridge.train.scratch import ScratchSpec, init_scratch_model

    texts = ["Paris: Paris is the capital of France.\n\nQuestion: What is the capital of France? ### It is Paris."] * 5
    out = init_scratch_model(tmp_path / "w", ScratchSpec(train_vocab=300, hidden_size=16, layers=1, heads=2), texts)
    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tok) <= 300 and model.config.tie_word_embeddings
    unseen = "Zürich 1815 — naïve ###"
    assert tok.decode(tok(unseen)["input_ids"]) == unseen  # byte-level: any text round-trips
    assert tok.eos_token == "<|endoftext|>" and model.generation_config.eos_token_id == tok.eos_token_id
    assert init_scratch_model(tmp_path / "w", ScratchSpec(train_vocab=999), []) == out  # an existing init is reused
