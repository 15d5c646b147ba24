"""LM-guided CoT's RL rewards: the frozen large model's EM/F1 when it answers from a rationale, plus rationale-quality
aspect scores. ``train.rl`` takes these callables as they are and knows nothing of the method.

The reward is ``w_task * task + Σ w_aspect * aspect``; every weighted component is its own callable, so TRL logs each
one's mean per step (``rewards/<name>/mean``) beside the weighted total.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cotbridge.answers.score import score_output
from cotbridge.backends.base import Completion
from cotbridge.errors import UserError
from cotbridge.quality.base import ASPECTS, SCORERS, ModelPool
from cotbridge.quality.scoring import build_scorers  # noqa: F401  (registers every scorer)
from cotbridge.recipes.lm_guided.inference import ANSWER_PIPELINE, answer_given, rationale_text
from cotbridge.train.rl import RewardFunc, RLConfig

DEFAULT_ASPECT_SCORERS = {
    "fluency": "lm_fluency",
    "relevance": "embedding_relevance",
    "factuality": "grounding",
    "readability": "flesch",
}  # the other aspects: the judge


def aspect_scorer(cfg: RLConfig, aspect: str) -> str:
    return cfg.aspect_scorers.get(aspect) or DEFAULT_ASPECT_SCORERS.get(aspect, "judge")


def task_reward(
    examples: dict[str, Any], large: Any, prompts_for: Callable[[Any], Any], metric: str = "f1"
) -> RewardFunc:
    """Reward = the large model's EM/F1 when it answers with the completion as rationale.

    ``examples`` maps the dataset's ``example_key`` column to (task, Example); ``prompts_for(task)`` gives that
    task's :class:`~cotbridge.recipes.lm_guided.inference.LargePrompts`.
    """

    def reward(prompts: list[str], completions: list[str], example_key: list[str], **_: Any) -> list[float]:
        by_task: dict[str, list[int]] = {}
        for i, key in enumerate(example_key):
            by_task.setdefault(examples[key][0].name, []).append(i)
        out = [0.0] * len(completions)
        for idx in by_task.values():
            task = examples[example_key[idx[0]]][0]
            exs = [examples[example_key[i]][1] for i in idx]
            rats = [[rationale_text(Completion(completions[i], "stop"))] for i in idx]
            _, answers = answer_given(large, prompts_for(task), exs, rats, progress=False)
            for i, ex, ans in zip(idx, exs, answers):
                v = score_output(ans[0].text, ex.golds, task.answer_type, pipeline=ANSWER_PIPELINE)
                out[i] = float(v.f1 if metric == "f1" else v.em)
        return out

    reward.__name__ = f"task_{metric}"
    return reward


def aspect_reward(aspect: str, scorer: Any, examples: dict[str, Any]) -> RewardFunc:
    """Reward = one aspect's score of the completion as a rationale for its question (and context)."""

    def reward(prompts: list[str], completions: list[str], example_key: list[str], **_: Any) -> list[float]:
        items = [
            {
                "question": examples[k][1].question,
                "context": examples[k][1].context or "",
                "rationale": rationale_text(Completion(c, "stop")),
            }
            for c, k in zip(completions, example_key)
        ]
        return [float(s[aspect]["score"] or 0.0) for s in scorer.score(items)]

    reward.__name__ = aspect
    return reward


def build_rewards(
    cfg: RLConfig,
    examples: dict[str, Any],
    large: Any,
    prompts_for: Callable[[Any], Any],
    scorers: dict[str, Any] | None = None,
    pool: ModelPool | None = None,
) -> tuple[list[RewardFunc], list[float]]:
    """(reward callables, weights) in the same order; components with weight 0 are left out."""
    unknown = sorted(set(cfg.weights) - {"task"} - set(ASPECTS))
    if unknown:
        raise UserError(f"rl.weights: unknown component(s) {unknown}; use 'task' or aspects: {', '.join(ASPECTS)}")
    scorers = dict(scorers or {})
    funcs, weights = [], []
    for name, w in cfg.weights.items():
        if w == 0:
            continue
        if name == "task":
            funcs.append(task_reward(examples, large, prompts_for, cfg.task_metric))
        else:
            sname = aspect_scorer(cfg, name)
            if sname not in scorers:
                opts = dict(cfg.scorer_options.get(sname, {}))
                given: dict[str, Any] = {"pool": pool}
                if sname == "judge":
                    given["aspects"] = [a for a in cfg.weights if a != "task" and aspect_scorer(cfg, a) == "judge"]
                scorers[sname] = SCORERS.build(sname, opts, where=f"rl.scorer_options.{sname}", **given)
            if name not in scorers[sname].aspects:
                raise UserError(
                    f"scorer {sname!r} does not score aspect {name!r} (it scores {', '.join(scorers[sname].aspects)})"
                )
            funcs.append(aspect_reward(name, scorers[sname], examples))
        weights.append(float(w))
    if not funcs:
        raise UserError("rl.weights: every weight is 0; nothing to reward")
    return funcs, weights
