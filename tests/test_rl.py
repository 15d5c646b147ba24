"""RL refinement: reward components and their weights, and a short GRPO run on a tiny decoder-only writer."""

from __future__ import annotations

import math

import pytest

from cotbridge.recipes.lm_guided.inference import LargePrompts, small_prompt
from cotbridge.recipes.lm_guided.rewards import build_rewards
from cotbridge.tasks import get_task
from cotbridge.tasks.base import Example
from cotbridge.train.rl import RLConfig, combine, train_rl, window_means

TASK = get_task("hotpotqa")
EXAMPLES = {
    "hotpotqa/q1": (
        TASK,
        Example(
            id="q1",
            question="Where was Ada born?",
            answer="London",
            context="Ada Lovelace: Ada Lovelace was born in London in 1815.",
        ),
    ),
    "hotpotqa/q2": (
        TASK,
        Example(
            id="q2",
            question="Which river flows through Paris?",
            answer="the Seine",
            context="Paris: Paris lies on the Seine river in France.",
        ),
    ),
}


def knows_if_told(scripted):
    """A large model that answers right only when the rationale names the answer."""

    def respond(text, req):
        ex = req.meta["example"]
        return [
            f" {ex.answer}."
            if ex.answer.lower().replace("the ", "") in req.meta.get("rationale", "").lower()
            else " Rome."
        ]

    return scripted(respond)


def test_rewards_follow_weights_and_task_reward_uses_the_large_model(scripted):
    large = knows_if_told(scripted)
    cfg = RLConfig(
        weights={"task": 2.0, "relevance": 0.5, "readability": 0.0}, aspect_scorers={"relevance": "lexical_relevance"}
    )
    funcs, weights = build_rewards(cfg, EXAMPLES, large, lambda t: LargePrompts(t))
    assert [f.__name__ for f in funcs] == ["task_f1", "relevance"] and weights == [2.0, 0.5]  # weight 0 dropped
    completions = ["Ada was born in London.", "Bananas are yellow."]
    keys = ["hotpotqa/q1", "hotpotqa/q1"]
    task = funcs[0](prompts=["p", "p"], completions=completions, example_key=keys)
    assert task == [1.0, 0.0]
    # the large model saw each rationale inside the answer-stage prompt
    assert "Ada was born in London." in large.requests[0].messages[-1]["content"]
    rel = funcs[1](prompts=["p", "p"], completions=completions, example_key=keys)
    assert rel[0] > rel[1] == 0.0
    total = combine({"task_f1": task, "relevance": rel}, {"task_f1": 2.0, "relevance": 0.5})
    assert total == pytest.approx([2.0 + 0.5 * rel[0], 0.0])


def test_unknown_component_and_aspect_scorer_mismatch_are_user_errors(scripted):
    from cotbridge.errors import UserError

    with pytest.raises(UserError, match="unknown component"):
        build_rewards(RLConfig(weights={"taks": 1.0}), EXAMPLES, scripted(lambda t, r: ["x"]), LargePrompts)
    with pytest.raises(UserError, match="does not score aspect 'fluency'"):
        build_rewards(
            RLConfig(weights={"fluency": 1.0}, aspect_scorers={"fluency": "flesch"}),
            EXAMPLES,
            scripted(lambda t, r: ["x"]),
            LargePrompts,
        )


def test_window_means():
    assert window_means([0, 0, 1, 1, 1, 1, 1, 1, 2, 2]) == (0.0, 2.0)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_a_short_rl_run_changes_the_policy_and_logs_finite_components(algorithm, tiny_model_dir, tmp_path, scripted):
    # A random writer never names the answer; this large model is right for rationales of odd length, so
    # rewards vary within each group and the policy gets a gradient.
    large = scripted(
        lambda text, req: [f" {req.meta['example'].answer}" if len(req.meta["rationale"]) % 2 else " Rome"]
    )
    cfg = RLConfig(
        algorithm=algorithm,
        weights={"task": 1.0, "relevance": 0.5, "factuality": 0.5},
        aspect_scorers={"relevance": "lexical_relevance"},
        steps=2,
        batch_size=8,
        num_generations=4,
        max_completion_length=8,
        lr=1e-2,
        beta=0.1,
        output_dir=str(tmp_path / "rl"),
    )
    funcs, weights = build_rewards(cfg, EXAMPLES, large, lambda t: LargePrompts(t))
    prompts = [{"prompt": small_prompt(ex), "example_key": key} for key, (_, ex) in EXAMPLES.items()]
    stats = train_rl(cfg, tiny_model_dir, prompts, funcs, weights)
    assert stats["trainer"] == {"grpo": "GRPOTrainer", "rloo": "RLOOTrainer"}[algorithm]
    assert stats["steps"] == 2 and len(stats["log"]) == 2
    assert stats["changed_tensors"] == stats["trainable_tensors"] > 0  # every policy tensor moved
    for row in stats["log"]:
        comps = {n: row[f"rewards/{n}/mean"] for n in ("task_f1", "relevance", "factuality")}
        assert all(math.isfinite(v) for v in comps.values()) and math.isfinite(row["kl"])
        # the logged total is the weighted sum of the component means
        assert row["reward"] == pytest.approx(
            comps["task_f1"] + 0.5 * comps["relevance"] + 0.5 * comps["factuality"], abs=1e-5
        )
    assert len(large.requests) >= 8  # every completion was answered by the large model
    assert (tmp_path / "rl" / "model.safetensors").exists() and (tmp_path / "rl" / "reward_log.jsonl").exists()


def test_encoder_decoder_writers_are_refused_before_training(tmp_path):
    from transformers import T5Config

    from cotbridge.errors import UserError
    from cotbridge.train.rl import check_decoder_only

    T5Config(vocab_size=64, d_model=8, d_ff=16, num_layers=1, num_heads=1, d_kv=8).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="encoder-decoder"):
        check_decoder_only(tmp_path)
