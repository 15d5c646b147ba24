"""Open reasoning-trace datasets as teachers: released traces (OpenThoughts-114k, Mixture-of-Thoughts, OpenR1-Math)
become teacher records with provenance, so curation, training and the reports treat them like any teacher's.

Each layout is read through ``datasets`` (a hub id, or local JSON/JSONL/Parquet files) and turned into one record per
trace: the question, the thinking and the final response kept apart (``answers/thinking.py``), the dataset's own
answer as the gold where it has one (checked with the task's answer type, math-verify for ``math``), and where the
trace came from (dataset, layout, row, generation). Without a gold answer (none in the layout, or a row's answer
null or blank) a trace is recorded as unverified (``correct`` is None), counted in the summary, and the ``correct``
filter drops it; ``--assume-correct`` keeps the source's own filtering. A row that is not its layout's shape is
refused with the row and field named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge.answers.score import score_output
from cotbridge.answers.thinking import split_thinking
from cotbridge.config import StrictModel
from cotbridge.errors import DataError, UserError
from cotbridge.record_file import RecordFile
from cotbridge.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Trace:
    question: str
    output: str  # the whole assistant turn, thinking included
    gold: str | None  # the dataset's answer, when it has one
    generation: int = 0  # which of a question's generations (OpenR1-Math has several)
    source_correct: bool | None = None  # the dataset's own verdict, when it has one


Layout = Callable[[dict[str, Any]], Iterator[Trace]]
LAYOUTS: Registry[Layout] = Registry("trace dataset layout")


class BadRow(ValueError):
    """A row that does not have its layout's shape; the message names the field and what to do."""


def gold_answer(value: Any) -> str | None:
    """The dataset's answer as the gold, or None (unverified) when the row has none: missing, null or blank.
    (``str(None)`` used to make "None" the gold, and every trace of the row was scored wrong against it.)"""
    if value is None or not str(value).strip():
        return None
    return str(value)


def _turns(messages: list[dict[str, Any]], role_key: str, text_key: str, user: str, assistant: str) -> tuple[str, str]:
    question = next((m[text_key] for m in messages if m.get(role_key) == user), None)
    answer = next((m[text_key] for m in reversed(messages) if m.get(role_key) == assistant), None)
    if question is None or answer is None:
        raise KeyError("a user and an assistant turn")
    return str(question), str(answer)


@LAYOUTS.register("openthoughts")
def openthoughts(row: dict[str, Any]) -> Iterator[Trace]:
    """OpenThoughts-114k: ``conversations`` [{from: user|assistant, value}]; the assistant writes
    ``<|begin_of_thought|> … <|end_of_thought|> <|begin_of_solution|> … <|end_of_solution|>``."""
    question, text = _turns(row["conversations"], "from", "value", "user", "assistant")
    text = (
        text.replace("<|begin_of_thought|>", "<think>")
        .replace("<|end_of_thought|>", "</think>")
        .replace("<|begin_of_solution|>", "")
        .replace("<|end_of_solution|>", "")
    )
    yield Trace(question, text, gold_answer(row.get("ground_truth_solution")) or gold_answer(row.get("answer")))


@LAYOUTS.register("mixture_of_thoughts")
def mixture_of_thoughts(row: dict[str, Any]) -> Iterator[Trace]:
    """Mixture-of-Thoughts: ``messages`` [{role, content}], the assistant's content ``<think>…</think>`` then the
    answer; no separate gold answer."""
    question, text = _turns(row["messages"], "role", "content", "user", "assistant")
    yield Trace(question, text, gold_answer(row.get("answer")))


@LAYOUTS.register("openr1_math")
def openr1_math(row: dict[str, Any]) -> Iterator[Trace]:
    """OpenR1-Math-220k: ``problem``, ``answer`` and several ``generations`` (each ``<think>…</think>`` + solution)
    with the dataset's ``correctness_math_verify`` per generation."""
    problem, generations, gold = row["problem"], row["generations"], gold_answer(row["answer"])
    if problem is None:
        raise BadRow("'problem' is null: fill in the row's question or leave the row out")
    # Refused rather than read as one generation: OpenR1-Math always lists its generations, parallel to
    # correctness_math_verify, so a string here is a mis-converted column (often a JSON-encoded list, which would
    # become one trace with brackets and quotes in it) or another dataset's layout, not one trace.
    if not isinstance(generations, list):
        raise BadRow(
            f"'generations' is a {type(generations).__name__}, not a list of traces (OpenR1-Math's layout); "
            "if each row holds one trace, write it as a one-element list"
        )
    verdicts = row.get("correctness_math_verify") or []
    for j, text in enumerate(generations):
        if not isinstance(text, str):
            raise BadRow(f"'generations'[{j}] is {'null' if text is None else type(text).__name__}, not a trace")
        yield Trace(str(problem), text, gold, j, verdicts[j] if j < len(verdicts) else None)


class TracesConfig(StrictModel):
    """``cotbridge traces``'s settings (the command's options, a --config YAML and --set all land here)."""

    source: str | None = None  # hub dataset id, or local .jsonl/.json/.parquet file(s) or a folder of them
    layout: str | None = None  # the dataset's layout
    task: str | None = None  # whose answer type checks the traces, e.g. math500
    output: str | None = None  # teacher records JSONL (RUN_DIR/teacher/NAME.jsonl)
    split: str = "train"  # the dataset's split
    limit: int | None = Field(default=None, ge=1)  # the first N rows
    assume_correct: bool = False  # traces without a gold answer count as correct (source-filtered)


LOCAL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def load_rows(source: str, split: str = "train") -> Any:
    """A hub dataset id, or local .json/.jsonl/.parquet file(s), through ``datasets``."""
    import datasets

    path = Path(source)  # (Path("") is the current folder: an empty source is refused below, not read as ".")
    if not source.strip() or (
        not path.exists() and (source.endswith(LOCAL_SUFFIXES) or source.startswith((".", "/", "~")))
    ):
        # a file name, not a hub id: else datasets asks the hub for it (20+ s offline) and says "couldn't reach"
        raise UserError(
            f"{source or repr(source)}: no such file or folder (a local .jsonl/.json/.parquet file or a "
            "folder of them; a hub dataset id looks like org/name)"
        )
    files = (sorted(str(p) for p in path.glob("*.*")) if path.is_dir() else [str(path)]) if path.exists() else []
    if path.exists():
        empty = [f for f in files if Path(f).is_file() and Path(f).stat().st_size == 0]
        if not files or len(empty) == len(files):
            raise UserError(f"{source}: empty (no rows to import)")
    quiet = logging.getLogger("datasets")
    level, bars = quiet.level, datasets.are_progress_bars_disabled()
    quiet.setLevel(logging.CRITICAL)  # its own ERROR lines would come before ours: one line is the rule
    if path.exists():
        datasets.disable_progress_bars()  # a local file converts in seconds; its bar would precede any error
    try:
        if path.exists():
            kind = "parquet" if files[0].endswith(".parquet") else "json"
            return datasets.load_dataset(kind, data_files=files, split="train")
        return datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001  (network, missing files and malformed files end the same way)
        if path.exists():
            name_bad_line(files)  # datasets says a file failed, not where: find the line in a JSON(L) file
        first = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"could not read {source} ({type(e).__name__}{': ' + first if first else ''})") from None
    finally:
        quiet.setLevel(level)
        if not bars:
            datasets.enable_progress_bars()


def name_bad_line(files: list[str]) -> None:
    """Raise the DataError (file and line) of the first line of these JSON-lines files that is not a JSON object, or
    of a .json file that is not JSON."""
    import json

    from cotbridge.jsonl import read_jsonl

    for name in files:
        if name.endswith((".jsonl", ".ndjson")):
            for _ in read_jsonl(name):
                pass
        elif name.endswith(".json"):
            try:
                json.loads(Path(name).read_bytes())
            except UnicodeDecodeError:
                raise DataError(name, "not UTF-8 text") from None
            except json.JSONDecodeError as e:
                raise DataError(name, f"invalid JSON ({e.msg} at column {e.colno})", e.lineno) from None


def import_traces(
    source: str,
    layout: str,
    task: str,
    out: str | Path,
    *,
    split: str = "train",
    limit: int | None = None,
    assume_correct: bool = False,
) -> dict[str, Any]:
    """Append one teacher record per trace of ``source`` to ``out`` (resumable: records already there are kept)."""
    from cotbridge.tasks import parse_task_spec

    convert = LAYOUTS.get(layout)
    task_obj, _ = parse_task_spec(task)
    records = RecordFile(out)
    new, unverified = [], 0
    for i, row in enumerate(load_rows(source, split)):
        if limit is not None and i >= limit:
            break
        try:
            traces = list(convert(dict(row)))
        except (KeyError, TypeError) as e:
            raise DataError(source, f"row {i}: not the {layout} layout (missing {e})") from None
        except BadRow as e:
            raise DataError(source, f"row {i}: {e}") from None
        for t in traces:
            key = f"{i}#{t.generation}"
            if key in records:
                continue
            trace = split_thinking(t.output)
            if t.gold is not None:
                v = score_output(t.output, [t.gold], task_obj.answer_type, letters=task_obj.choice_letters)
                correct, prediction = v.correct, v.prediction
            else:
                unverified += 1
                # --assume-correct trusts the source: its own verdict where it gave one (OpenR1-Math), else True
                source_verdict = True if t.source_correct is None else t.source_correct
                correct, prediction = (source_verdict if assume_correct else None), None
            new.append(
                {
                    "key": key,
                    "task": task_obj.name,
                    "split": split,
                    "example_id": str(i),
                    "sample": t.generation,
                    "question": t.question,
                    "gold": t.gold,
                    "rationale": trace.response,
                    "thinking": trace.thinking,
                    "thinking_complete": trace.complete if trace.thinking is not None else None,
                    "prediction": prediction,
                    "correct": correct,
                    "source_correct": t.source_correct,
                    "finish_reason": {"rationale": "stop" if trace.complete else "length", "answer": None},
                    "teacher": {"backend": "released_traces", "model": source},
                    "provenance": {
                        "dataset": source,
                        "layout": layout,
                        "split": split,
                        "row": i,
                        "generation": t.generation,
                    },
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0},
                    "cost_usd": None,
                }
            )
    records.append(new)
    summary = {
        "source": source,
        "layout": layout,
        "records": len(records),
        "new": len(new),
        "unverified": unverified,
        "correct": sum(bool(r.get("correct")) for r in records.records.values()),
    }
    log.info("%s (%s): %d new trace records in %s", source, layout, len(new), out)
    return summary
