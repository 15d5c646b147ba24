"""Student dataset formats: curated teacher records -> prompt/completion (or chat messages) examples.

Fine-tune-CoT (Ho et al.): ``{question} ###`` -> `` {rationale} --> {answer}`` (loss on the completion);
vanilla fine-tuning: `` {answer}``; a natural-language variant ending ``Therefore the answer is {answer}``;
and a chat format for instruction-tuned students. The answer is always the gold label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cotbridge.answers.types import ANSWER_TYPES
from cotbridge.prompts.modes import CHAT_INSTRUCTION, STUDENT_SUFFIX
from cotbridge.registry import Registry

RUN_ON_MARKERS = ("\n\nQ:", "\nQ:", "\n\nQuestion:", "\n\nPremise:")


@dataclass(frozen=True)
class StudentFormat:
    name: str
    build: Callable[[dict[str, Any]], dict[str, Any]]
    eval_mode: str  # the prompt mode that evaluates a student trained in this format
    uses_rationale: bool = True


FORMATS: Registry[StudentFormat] = Registry("student format")


def clean_rationale(text: str) -> str:
    """Cut run-on text (a teacher starting the next few-shot question) and surrounding white space."""
    cut = min((i for i in (text.find(m) for m in RUN_ON_MARKERS) if i >= 0), default=len(text))
    return text[:cut].strip()


def gold_label(record: dict[str, Any], answer_type: str) -> str:
    """The gold answer as a student should write it (numbers without a trailing .0)."""
    gold = str(record["gold"]).strip()
    if answer_type == "number":
        candidates = ANSWER_TYPES.get("number").candidates(gold, "")
        return candidates[0] if candidates else gold
    return gold


def _finetune_cot(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": f"{r['question']}{STUDENT_SUFFIX}",
        "completion": f" {clean_rationale(r['rationale'])} --> {r['label']}",
    }


def _vanilla(r: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": f"{r['question']}{STUDENT_SUFFIX}", "completion": f" {r['label']}"}


def _natural(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": f"{r['question']}{STUDENT_SUFFIX}",
        "completion": f" {clean_rationale(r['rationale'])} Therefore the answer is {r['label']}.",
    }


def _chat(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{r['question']}"}],
        "completion": [
            {"role": "assistant", "content": f"{clean_rationale(r['rationale'])} The answer is {r['label']}."}
        ],
    }


FORMATS.add("finetune_cot", StudentFormat("finetune_cot", _finetune_cot, "finetune_cot"))
FORMATS.add("vanilla", StudentFormat("vanilla", _vanilla, "vanilla", uses_rationale=False))
FORMATS.add("natural", StudentFormat("natural", _natural, "natural"))
FORMATS.add("chat", StudentFormat("chat", _chat, "chat_cot"))


def to_student_examples(records: list[dict[str, Any]], fmt: str, answer_type: str) -> list[dict[str, Any]]:
    """One training example per record, with provenance (task, example id, sample, teacher) kept."""
    spec = FORMATS.get(fmt)
    out = []
    for r in records:
        ex = spec.build({**r, "label": gold_label(r, answer_type)})
        ex.update(
            {
                "task": r.get("task"),
                "example_id": r.get("example_id"),
                "sample": r.get("sample"),
                "teacher": (r.get("teacher") or {}).get("model"),
            }
        )
        out.append(ex)
    return out


def vanilla_examples(questions: list[dict[str, Any]], answer_type: str) -> list[dict[str, Any]]:
    """Vanilla fine-tuning needs no teacher: one answer-only example per training question."""
    return to_student_examples([{**q, "rationale": ""} for q in questions], "vanilla", answer_type)
