"""Released teacher outputs in their published layouts -> one replay file per (teacher, task).

Each layout reader yields ``(example id, question, text)`` with ids of cotbridge's own task examples,
so the replay backend serves them by id and ``teach`` scores and records them like live teacher
calls. Layouts:

- ``re2``: Re-Reading (Xu et al.) ``results/*.jsonl``: one record per question, ``id`` plus
  ``cot.generation[0]``. GSM8K ids are lines of the GSM8K test file (``test-{id}``), CommonsenseQA
  ids index its dev set (the Fine-tune-CoT test split, ``9741 + id``), SVAMP ids index svamp.json.
- ``palm_sbs``: distilling-step-by-step's PaLM-540B folder (``<task>_{train,test}.json`` inputs and
  ``palm/<split>_CoT_<i>.json`` lists of raw completions, element i for input line i). Matched to
  task examples by question text; the few-shot run-on (``\\n\\nQ: ...``) is cut off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cotbridge.backends.replay import normalize_question
from cotbridge.config import StrictModel
from cotbridge.engine import unit
from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import get_field, read_json, read_jsonl, write_jsonl
from cotbridge.prompts.formats import clean_rationale
from cotbridge.registry import Registry
from cotbridge.tasks import parse_task_spec

Released = Iterator[tuple[str, str, str]]  # (example id, question, text)
LAYOUTS: Registry[Callable[[Path, str, str | None], Released]] = Registry("released-output layout")


class ReleasedSpec(StrictModel):
    layout: str  # re2 | palm_sbs
    path: str  # a file (re2) or a folder (palm_sbs)


# Re2 ids -> cotbridge example ids, per task.
RE2_IDS: dict[str, Callable[[Any], str]] = {
    "gsm8k": lambda i: f"test-{i}",
    "commonsense_qa": lambda i: str(9741 + int(i)),
    "svamp": lambda i: str(i),
}


@LAYOUTS.register("re2")
def read_re2(path: Path, task: str, data_dir: str | None) -> Released:
    if task not in RE2_IDS:
        raise UserError(f"released layout 're2': no id mapping for task {task!r} (known: {', '.join(RE2_IDS)})")
    for line, rec in enumerate(read_jsonl(path), 1):
        text = get_field(rec, "cot.generation.0", path=path, line=line)
        question = rec.get("input") or get_field(rec, "question.stem", path=path, line=line)
        yield RE2_IDS[task](get_field(rec, "id", path=path, line=line)), str(question), text or ""


def _palm_question(task: str, rec: dict[str, Any], path: Path, line: int) -> str:
    if "choices" in rec:  # CQA: fold the choices in the way the Fine-tune-CoT dataset writes them
        opts = ", ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(rec["choices"]))
        return f"{rec['question'].strip()} Answer choices: {opts}."
    if "input" in rec:
        return rec["input"]
    raise DataError(path, "expected 'input' or 'question' + 'choices'", line)


@LAYOUTS.register("palm_sbs")
def read_palm_sbs(folder: Path, task: str, data_dir: str | None) -> Released:
    t, params = parse_task_spec(task)
    by_question: dict[str, str] = {}
    for split in ("train", "test"):
        for ex in t.load(split, data_dir, **params):
            by_question.setdefault(normalize_question(ex.question), ex.id)
    found = 0
    for split in ("train", "test", "valid"):
        inputs = sorted(folder.glob(f"*_{split}.json"))
        if not inputs:
            continue
        records = list(read_jsonl(inputs[0]))
        parts = sorted(
            folder.glob(f"palm/{split}_CoT_*.json"),
            key=lambda p: int(re.sub(r"\D", "", p.stem.rsplit("_", 1)[1]) or 0),
        )
        texts: list[str] = [t for p in parts for t in _str_list(p)]
        if len(texts) != len(records):
            raise DataError(
                folder / "palm", f"{split}: {len(texts)} rationales for {len(records)} inputs in {inputs[0].name}"
            )
        for line, (rec, text) in enumerate(zip(records, texts), 1):
            question = _palm_question(task, rec, inputs[0], line)
            ex_id = by_question.get(normalize_question(question))
            if ex_id is not None:
                found += 1
                yield ex_id, question, clean_rationale(text)
    if not found:
        raise DataError(folder, f"no PaLM rationale matched a question of task {task!r} (is this the right folder?)")


def _str_list(path: Path) -> list[str]:
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise DataError(path, "expected a JSON list of strings")
    return data


def convert_released(spec: ReleasedSpec, task: str, out: Path, data_dir: str | None = None) -> dict[str, Any]:
    """Write ``out`` (JSONL: example_id, question, text) once; return replay backend options for it."""
    src = Path(spec.path)
    if not src.exists():
        raise UserError(f"released outputs {src} not found")
    reader = LAYOUTS.get(spec.layout)

    def convert() -> dict[str, Any]:  # the outputs, then their source record: that marks the conversion done
        seen: dict[str, dict[str, str]] = {}
        for ex_id, question, text in reader(src, task, data_dir):
            seen.setdefault(ex_id, {"example_id": ex_id, "question": question, "text": text})  # first copy wins
        write_jsonl(out, seen.values())
        return {**spec.model_dump(), "task": task, "records": len(seen)}

    unit(out.with_suffix(".source.json"), convert)
    return {"path": str(out), "id_field": "example_id", "text_field": "text"}
