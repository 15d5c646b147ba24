"""``cotbridge score``: rationales scored on the LM-guided CoT quality aspects."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cotbridge.cli.options import ConfigOpt, set_option

SETTINGS = "cotbridge.quality.score_file:ScoreConfig"  # the keys listed under --help
SETTINGS_NOTE = "ITEMS sets input; --output, --scorers and the --*-field options set the keys of the same name."
SetOpt = set_option("scorers=[grounding]")


def score_cmd(
    items: Annotated[
        str, typer.Argument(metavar="ITEMS", help="JSONL of rationales (question, rationale, optional context)")
    ],
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="scored JSONL to write")],
    scorers: Annotated[
        Optional[str],
        typer.Option(
            metavar="NAME,...",
            help="comma-separated: lm_fluency, embedding_relevance, lexical_relevance, grounding, "
            "flesch, judge (default: the automatic ones)",
        ),
    ] = None,
    question_field: Annotated[
        Optional[str], typer.Option(metavar="FIELD", help="dotted path of the question (default question)")
    ] = None,
    rationale_field: Annotated[
        Optional[str], typer.Option(metavar="FIELD", help="dotted path of the rationale (default rationale)")
    ] = None,
    context_field: Annotated[
        Optional[str],
        typer.Option(metavar="FIELD", help="dotted path of the context paragraphs (default: context, if present)"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score rationales on the eight LM-guided CoT aspects (judge model and/or cheap automatic scorers)."""
    from cotbridge.config import load_config
    from cotbridge.quality.score_file import ScoreConfig, run_score

    names = [s.strip() for s in scorers.split(",") if s.strip()] if scorers else None
    flags = {
        "input": items,
        "output": output,
        "scorers": names,
        "question_field": question_field,
        "rationale_field": rationale_field,
        "context_field": context_field,
    }
    cfg = load_config(ScoreConfig, config, set_, flags)
    summary = run_score(cfg)
    for key, cell in summary["means"].items():
        typer.echo(f"{key:>32}: {cell['mean']:.3f} (n={cell['n']})")
    typer.echo(f"wrote {cfg.output}")
