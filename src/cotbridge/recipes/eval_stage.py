"""The evaluation stage the recipes share (finetune_cot, instruct, on_policy): a model evaluated once into
``<run_dir>/eval/<name>``, in ``cotbridge eval``'s layout (results.json, <task>.jsonl, results.md, the Inspect log),
read back from there on a resume. A recipe-level module: the recipes import it, it imports none of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge.config import StrictModel


class EvalSpec(StrictModel):
    """A recipe's ``eval`` section: which questions, and how much a model may write."""

    split: str = "test"
    limit: int | None = Field(default=None, ge=1)  # test questions (None: the whole split)
    batch_size: int = Field(default=16, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)  # None: the prompt mode's default


def evaluate_model(
    run_dir: Path,
    name: str,
    *,
    model: str,
    task: str | list[str],
    spec: EvalSpec,
    mode: str,
    chat: bool = False,
    data_dir: str | None = None,
    gguf_file: str | None = None,
    progress: bool = True,
    ids: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``cotbridge eval``'s job for one model on a task (or several), done once (engine.unit: its results.json marks
    it); ``ids``: per task name, exactly the examples to test on."""
    from cotbridge.engine import unit
    from cotbridge.evaluation.run import EvalConfig, run_eval

    out = run_dir / "eval" / name
    cfg = EvalConfig(
        model=model,
        gguf_file=gguf_file,
        tasks=[task] if isinstance(task, str) else list(task),
        ids=ids,
        split=spec.split,
        data_dir=data_dir,
        limit=spec.limit,
        mode=mode,
        chat=chat,
        batch_size=spec.batch_size,
        max_tokens=spec.max_tokens,
        output=str(out),
    )
    return unit(out / "results.json", lambda: run_eval(cfg, progress=progress))
