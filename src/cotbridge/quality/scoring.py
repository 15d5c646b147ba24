"""Running rationale-quality scorers over items and averaging their scores; importing this registers every scorer."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from cotbridge.quality import judge as _judge  # noqa: F401  (registers the judge)
from cotbridge.quality import scorers as _scorers  # noqa: F401  (registers the automatic scorers)
from cotbridge.quality.base import SCORERS, Item, ModelPool, Scorer
from cotbridge.quality.scorers import AUTOMATIC

__all__ = ["AUTOMATIC", "build_scorers", "mean_scores", "score_items"]


def build_scorers(
    names: list[str],
    options: dict[str, dict[str, Any]] | None = None,
    pool: ModelPool | None = None,
    where: str = "options",
) -> list[Scorer]:
    """Scorers by name; ``options[name]`` are passed to that scorer's constructor, checked against it first (an
    unknown option or a wrong type is an error naming ``where.name.key``). Model-based scorers take their models from
    ``pool`` (a caller that already holds the large model puts it there; a new pool loads on demand)."""
    options = options or {}
    pool = pool if pool is not None else ModelPool()
    for extra in set(options) - set(names):
        SCORERS.get(extra)  # a typo in the options fails like a typo in the names
    return [SCORERS.build(n, options.get(n, {}), where=f"{where}.{n}", pool=pool) for n in names]


def score_items(
    items: list[Item], scorers: list[Scorer], progress: bool = False, chunk: int = 32
) -> list[dict[str, Any]]:
    """Each item with ``scores[scorer][aspect] = {score, raw}`` added; ``progress`` shows a bar per scorer that
    moves every ``chunk`` items (a judge or an LM scorer can take minutes)."""
    out = [dict(it, scores={}) for it in items]
    for scorer in scorers:
        step = chunk if progress else max(1, len(items))
        with tqdm(total=len(items), desc=f"score {scorer.name}", unit="item", disable=not progress) as bar:
            for start in range(0, len(items), step):
                part = items[start : start + step]
                for rec, s in zip(out[start : start + step], scorer.score(part)):
                    rec["scores"][scorer.name] = s
                bar.update(len(part))
    return out


def mean_scores(scored: list[dict[str, Any]], group: str | None = "row") -> dict[str, dict[str, dict[str, Any]]]:
    """{group value: {"scorer/aspect": {"mean": float, "n": int}}} over the scores that are not None
    (``group=None``: one group, ``"all"``)."""
    table: dict[str, dict[str, list[float]]] = {}
    for rec in scored:
        cells = table.setdefault(str(rec.get(group)) if group else "all", {})
        for scorer, aspects in rec["scores"].items():
            for aspect, s in aspects.items():
                if s.get("score") is not None:
                    cells.setdefault(f"{scorer}/{aspect}", []).append(float(s["score"]))
    return {g: {k: {"mean": sum(v) / len(v), "n": len(v)} for k, v in cells.items()} for g, cells in table.items()}
