"""``cotbridge score``: rationale-quality scores for any JSONL of rationales (teacher records, eval records, …)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge.config import StrictModel
from cotbridge.errors import DataError
from cotbridge.jsonl import get_field, read_jsonl, write_json, write_jsonl
from cotbridge.quality.scoring import AUTOMATIC, build_scorers, mean_scores, score_items


class ScoreConfig(StrictModel):
    input: str
    output: str
    scorers: list[str] = Field(default=list(AUTOMATIC), min_length=1)  # `--scorers ,` scored nothing, exit 0
    options: dict[
        str, dict[str, Any]
    ] = {}  # scorer -> options, e.g. judge: {backend, model, options, reading, samples}
    question_field: str = "question"
    rationale_field: str = "rationale"
    context_field: str | None = None  # None: the record's "context" field where it has one
    limit: int | None = Field(default=None, ge=1)


def load_items(cfg: ScoreConfig) -> list[dict[str, Any]]:
    items = []
    for line, rec in enumerate(read_jsonl(cfg.input), 1):
        if cfg.limit is not None and len(items) >= cfg.limit:
            break
        rationale = get_field(rec, cfg.rationale_field, path=cfg.input, line=line)
        if not isinstance(rationale, str):
            raise DataError(cfg.input, f"field {cfg.rationale_field!r} is not a string", line)
        context = (
            get_field(rec, cfg.context_field, path=cfg.input, line=line) if cfg.context_field else rec.get("context")
        )
        items.append(
            {
                "record": rec,
                "question": str(get_field(rec, cfg.question_field, path=cfg.input, line=line)),
                "context": context if isinstance(context, str) else "",
                "rationale": rationale,
            }
        )
    if not items:  # as eval, curate and train refuse empty input: an empty output file would look like a result
        raise DataError(cfg.input, "no records to score (the file is empty)")
    return items


def run_score(cfg: ScoreConfig) -> dict[str, Any]:
    """Write each input record with ``scores[scorer][aspect] = {score, raw}``; return the means."""
    scorers = build_scorers(cfg.scorers, cfg.options)  # unknown names fail before anything is read
    items = load_items(cfg)
    scored = score_items(items, scorers, progress=True)
    write_jsonl(cfg.output, [{**it.pop("record"), "scores": it["scores"]} for it in scored])
    summary = {"input": cfg.input, "items": len(scored), "means": mean_scores(scored, group=None).get("all", {})}
    write_json(Path(cfg.output).with_suffix(".summary.json"), summary)
    return summary
