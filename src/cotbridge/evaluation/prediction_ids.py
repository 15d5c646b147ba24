"""Which question of a task's split each recorded prediction answers: by its id (``--id-field``, read through
``--id-template``), never by its position in the file, and checked against the question the record carries."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import get_field
from cotbridge.tasks.base import Example

log = logging.getLogger(__name__)

# Where a record's question is looked for when no --question-field is given (the first one present is checked).
QUESTION_FIELDS = ("question", "input")


def check_id_template(template: str) -> None:
    try:
        ok = "{}" in template and template.format("0") != template
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"--id-template {template!r}: expected text with one {{}} where the id goes, e.g. 'test-{{}}'")


def format_id(raw: Any, template: str) -> str | None:
    """The split id a record's id names, or None when it is no id (null, a list, a mapping, a boolean)."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, (dict, list)):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # 17.0 written by a tool that stores numbers as floats
    return template.format(raw)


def question_words(text: str) -> str:
    """A question for comparison: its words, lower case, without punctuation (released copies differ in it)."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def recorded_question(rec: dict[str, Any], question_field: str | None, path: object, line: int) -> str | None:
    """The record's own question text (CommonsenseQA's ``{"stem", ...}`` gives its stem), or None if it has none."""
    if question_field:
        value = get_field(rec, question_field, path=path, line=line)
    else:
        value = next((rec[f] for f in QUESTION_FIELDS if f in rec), None)
    if isinstance(value, dict):
        value = value.get("stem")
    return value if isinstance(value, str) and value.strip() else None


def same_question(recorded: str, example: str) -> bool:
    """The recorded text is the split's question: the same words, or a prompt that contains them, or the split's
    question begins with it (a stem whose choices the task appends)."""
    rec, ex = question_words(recorded), question_words(example)
    return bool(rec) and (f" {ex} " in f" {rec} " or f"{ex} ".startswith(f"{rec} "))


def short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def match_ids(
    rows: list[tuple[int, dict[str, Any]]],
    examples: list[Example],
    id_field: str,
    id_template: str,
    question_field: str | None,
    path: str | Path,
    task_name: str,
    split: str,
) -> list[Example]:
    """The example of the split each record names by its id; refuses ids the split does not have, an id named
    twice, and a record whose question is not its example's question (the first of each, with its line)."""
    by_id = {ex.id: ex for ex in examples}
    matched: list[Example] = []
    unknown: list[tuple[int, Any]] = []
    mismatched: list[tuple[int, Any, str, Example]] = []
    seen: dict[str, int] = {}
    checked = 0
    for line, rec in rows:
        raw = get_field(rec, id_field, path=path, line=line)
        key = format_id(raw, id_template)
        example = by_id.get(key) if key is not None else None
        if example is None:
            unknown.append((line, raw))
            continue
        if key in seen:
            raise DataError(
                path,
                f"id {raw!r} is named twice (lines {seen[key]} and {line}); keep one record per question",
                line,
            )
        seen[key] = line
        question = recorded_question(rec, question_field, path, line)
        checked += question is not None
        if question is not None and not same_question(question, example.question):
            mismatched.append((line, raw, question, example))
        matched.append(example)
    where = f"the {split} split of {task_name} ({len(examples)} questions)"
    if not unknown and not checked:
        log.warning(
            "%s: no record carries its question (%s), so the ids are trusted unchecked; --question-field names the "
            "field if it has another name",
            path,
            question_field or " or ".join(QUESTION_FIELDS),
        )
    if unknown:
        line, raw = unknown[0]
        looked_up = "" if id_template == "{}" else f" (looked up as {format_id(raw, id_template)!r})"
        like = ", ".join(repr(ex.id) for ex in examples[:2])
        raise DataError(
            path,
            f"id {raw!r}{looked_up} is not an id of {where}: {len(unknown)} of the file's {len(rows)} ids are "
            f"not (the split's look like {like}); fix --id-field, --id-template or --split, or score "
            "with --gold-field",
            line,
        )
    if mismatched:
        line, raw, question, example = mismatched[0]
        raise DataError(
            path,
            f"id {raw!r} names another question in {where}: the file has {short(question)!r}, the split "
            f"{short(example.question)!r} ({len(mismatched)} of {len(rows)} records disagree); the file's ids are "
            "not the task's: fix --id-field or --id-template, or score with --gold-field",
            line,
        )
    return matched
