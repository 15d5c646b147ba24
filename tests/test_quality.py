"""Rationale-quality scorers: automatic aspects, the judge's two readings, caching, stored raw outputs, the CLI."""

from __future__ import annotations

import json
import math

import pytest

from cotbridge.quality.base import ASPECTS, SCORERS, ModelPool
from cotbridge.quality.judge import JudgeScorer, read_verdicts
from cotbridge.quality.scoring import build_scorers, mean_scores, score_items

ITEM = {
    "question": "Where was Ada Lovelace born?",
    "context": "Ada Lovelace: Ada Lovelace was born in London in 1815.",
    "rationale": "Ada Lovelace was born in London.",
}
OFF_TOPIC = dict(ITEM, rationale="Bananas grow on tall tropical plants, often eaten at breakfast.")


def test_eight_aspects_and_registry_suggestions():
    from cotbridge.errors import UserError

    assert list(ASPECTS) == [
        "factuality",
        "relevance",
        "logicality",
        "consistency",
        "coherence",
        "fluency",
        "naturalness",
        "readability",
    ]
    with pytest.raises(UserError, match="did you mean 'grounding'"):
        SCORERS.get("grounding2")


def test_lexical_scorers_prefer_the_grounded_rationale():
    on, off = score_items([ITEM, OFF_TOPIC], build_scorers(["lexical_relevance", "grounding", "flesch"]))
    assert (
        on["scores"]["lexical_relevance"]["relevance"]["score"]
        > off["scores"]["lexical_relevance"]["relevance"]["score"]
        == 0
    )
    assert on["scores"]["grounding"]["factuality"]["score"] == 1.0  # every content word is in the context
    assert off["scores"]["grounding"]["factuality"]["score"] == 0.0
    for rec in (on, off):
        assert 0 <= rec["scores"]["flesch"]["readability"]["score"] <= 1
    empty = score_items([dict(ITEM, rationale="")], build_scorers(["grounding", "flesch"]))[0]["scores"]
    assert empty["grounding"]["factuality"]["score"] == 0 and empty["flesch"]["readability"]["score"] == 0


def test_lm_scorers_use_the_pooled_model(tiny_model_dir):
    from cotbridge.models.loading import load_model_and_tokenizer

    pool = ModelPool()
    pool.put("tiny-test-lm", *load_model_and_tokenizer(str(tiny_model_dir)))
    fl, emb = build_scorers(
        ["lm_fluency", "embedding_relevance"],
        {"lm_fluency": {"model": "tiny-test-lm"}, "embedding_relevance": {"model": "tiny-test-lm"}},
        pool=pool,
    )
    scores = score_items([ITEM, dict(ITEM, rationale="")], [fl, emb])
    f = scores[0]["scores"]["lm_fluency"]["fluency"]
    log_v = math.log(len(pool.get("tiny-test-lm")[1]))
    assert f["raw"]["mean_logprob"] < 0 and f["score"] == pytest.approx(max(0.0, 1 + f["raw"]["mean_logprob"] / log_v))
    assert scores[1]["scores"]["lm_fluency"]["fluency"]["score"] == 0.0  # nothing to score
    assert 0 <= scores[0]["scores"]["embedding_relevance"]["relevance"]["score"] <= 1


@pytest.mark.parametrize(
    "texts, reading, expected",
    [
        (["4"], "scale", 0.75),
        ([" 3."], "scale", 0.5),
        (["Rating: 5/5"], "scale", 1.0),
        (["1 (not at all)"], "scale", 0.0),
        (["great"], "scale", None),
        (["1. Adriana Trigiani wrote"], "scale", None),
        (["I'd say 4 out of 5"], "scale", 0.75),
        (["The score is 2."], "scale", 0.25),
        (["12"], "scale", None),
        (["Yes, it is."], "yes_no", 1.0),
        (["no"], "yes_no", 0.0),
        (["yes", "No.", "yes", "maybe"], "yes_no", 2 / 3),
    ],
)
def test_judge_readings(texts, reading, expected):
    got = read_verdicts(texts, reading)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_judge_asks_one_question_per_aspect_through_the_cache(scripted, tmp_path):
    from cotbridge.backends.request_cache import CachedBackend, RequestCache

    replies = {"fluency": "5", "relevance": "2", "logicality": "no idea"}
    judge_model = scripted(
        lambda text, req: [next(r for a, r in replies.items() if ASPECTS[a] in req.messages[0]["content"])]
    )
    cached = CachedBackend(judge_model, RequestCache(tmp_path / "cache.sqlite"))
    judge = JudgeScorer(aspects=["fluency", "relevance", "logicality"], backend_obj=cached)
    scored = score_items([ITEM], [judge])[0]["scores"]["judge"]
    assert scored["fluency"] == {"score": 1.0, "raw": ["5"], "reading": "scale"}
    assert scored["relevance"]["score"] == 0.25 and scored["logicality"] == {
        "score": None,
        "raw": ["no idea"],
        "reading": "scale",
    }
    assert judge_model.requests[0].messages[1] == {"role": "assistant", "content": "Rating (1-5):"}
    assert judge_model.requests[0].continue_final
    asked = judge_model.requests[0].messages[0]["content"]
    assert "Rationale: Ada Lovelace was born in London." in asked and "Context: Ada Lovelace:" in asked
    assert len(judge_model.requests) == 3
    score_items([ITEM], [judge])  # scoring again is served by the request cache
    assert len(judge_model.requests) == 3 and cached.hits == 3


def test_judge_yes_no_samples_estimate_a_probability(scripted):
    judge_model = scripted(lambda text, req: ["yes", "no", "yes", "yes"][: req.n])
    judge = JudgeScorer(aspects=["coherence"], reading="yes_no", samples=4, backend_obj=judge_model)
    s = judge.score([ITEM])[0]["coherence"]
    assert s["score"] == 0.75 and judge_model.requests[0].n == 4 and judge_model.requests[0].temperature == 1.0
    assert "Reply with yes or no." in judge_model.requests[0].messages[0]["content"]
    plain = JudgeScorer(
        aspects=["coherence"], reading="yes_no", chat=False, answer_prefix=None, backend_obj=judge_model
    )
    assert plain.request(ITEM, "coherence").prompt.endswith("Reply with yes or no.\nAnswer:")


def test_mean_scores_groups_by_row():
    scored = score_items(
        [dict(ITEM, row="a"), dict(OFF_TOPIC, row="a"), dict(ITEM, row="b")], build_scorers(["grounding"])
    )
    means = mean_scores(scored)
    assert (
        means["a"]["grounding/factuality"] == {"mean": 0.5, "n": 2}
        and means["b"]["grounding/factuality"]["mean"] == 1.0
    )


def test_score_command_writes_scores_per_record(tmp_path):
    from typer.testing import CliRunner

    from cotbridge.cli import app

    src = tmp_path / "rationales.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": i, "q": it["question"], "context": it["context"], "out": {"text": it["rationale"]}})
            + "\n"
            for i, it in enumerate([ITEM, OFF_TOPIC])
        )
    )
    out = tmp_path / "scored.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "score",
            str(src),
            "-o",
            str(out),
            "--scorers",
            "grounding,lexical_relevance",
            "--question-field",
            "q",
            "--rationale-field",
            "out.text",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1] and rows[0]["scores"]["grounding"]["factuality"]["score"] == 1.0
    assert "grounding/factuality" in res.output and "0.500 (n=2)" in res.output


@pytest.mark.slow
def test_smollm2_fluency_and_relevance_rank_real_text_above_noise():
    fl, emb = build_scorers(["lm_fluency", "embedding_relevance"])
    noise = dict(ITEM, rationale="### the the ### London London ## ## , , born born 1815 ###")
    good, bad = score_items([ITEM, noise], [fl, emb])
    assert good["scores"]["lm_fluency"]["fluency"]["score"] > bad["scores"]["lm_fluency"]["fluency"]["score"] + 0.2
    assert (
        good["scores"]["embedding_relevance"]["relevance"]["score"]
        > score_items([OFF_TOPIC], [emb])[0]["scores"]["embedding_relevance"]["relevance"]["score"]
    )
