"""Demonstrations -> instruction-following chat examples (Ranaldi & Freitas's instruction-tuning-CoT).

A user turn holds an instruction that asks for step-by-step reasoning and the question, with its
answer choices one per line where there are any; the assistant turn holds the teacher's reasoning
followed by one fixed answer sentence built from the *gold* label, e.g. ``The answer is B) text``.
The wording lives in templates (plain data: the built-in ones below, or a YAML file of the same
keys), so changing a prompt never means changing code. The student's own chat template renders the
messages, at training time (TRL) and at evaluation time (the ``instruct:<template>`` prompt mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotbridge.answers.extract import ANSWER_IS_RE
from cotbridge.config import StrictModel, read_yaml
from cotbridge.errors import UserError
from cotbridge.prompts.formats import clean_rationale, gold_label
from cotbridge.prompts.modes import PROMPT_MODES, PromptContext, PromptMode, question_block
from cotbridge.registry import Registry
from cotbridge.tasks.base import Example


class InstructionTemplate(StrictModel):
    """Every string is a ``str.format`` template; ``{...}`` names are listed per field."""

    name: str
    # By answer type ("choice", "number", "yesno", ...); "default" serves the rest.
    instruction: dict[str, str]
    user: str = "{instruction}\n\n{question}"  # {instruction}, {question}
    question: str = "Question: {stem}"  # {stem}: the question without its answer choices
    choices: str = "\nAnswer choices:\n{choices}"  # appended to the question; {choices}: the lines below, joined
    choice: str = "{letter}) {text}"  # one line per choice
    answer: dict[str, str] = {"choice": "The answer is {letter}) {text}", "default": "The answer is {answer}"}
    assistant: str = "{rationale}\n{answer_sentence}"  # {rationale}, {answer_sentence}


TEMPLATES: Registry[InstructionTemplate] = Registry("instruction template")
TEMPLATES.add(
    "ranaldi_freitas",
    InstructionTemplate(
        name="ranaldi_freitas",
        instruction={
            "choice": "Choose the answer to the question from the answer choices. Think step by step, "
            "then finish with 'The answer is' followed by the letter and the text of your choice.",
            "default": "Answer the question. Think step by step, "
            "then finish with 'The answer is' followed by your answer.",
        },
    ),
)
TEMPLATES.add(
    "alpaca_cot",
    InstructionTemplate(
        name="alpaca_cot",
        instruction={
            "default": "Below is a question. Write a response that reasons step by step and ends with the answer."
        },
        user="### Instruction:\n{instruction}\n\n### Input:\n{question}",
        assistant="{rationale}\n{answer_sentence}",
    ),
)

CHOICES_RE = re.compile(r"\s*(?:Which choice is true\?\s*)?Answer choices:\s*(.*?)\.?\s*$", re.DOTALL)
CHOICE_RE = re.compile(r"\(([A-Z])\)\s*(.*?)\s*(?=,\s*\([A-Z]\)|$)", re.DOTALL)
BOXED_TAIL_RE = re.compile(r"\\boxed\s*\{")


def load_template(spec: str) -> InstructionTemplate:
    """A built-in template by name, or a YAML file holding an InstructionTemplate's keys."""
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        data = read_yaml(spec)
        data.setdefault("name", Path(spec).stem)
        try:
            return InstructionTemplate.model_validate(data)
        except Exception as e:  # pydantic's message names the key
            raise UserError(f"{spec}: not an instruction template ({e})") from None
    return TEMPLATES.get(spec)


@dataclass(frozen=True)
class Choices:
    stem: str
    options: list[tuple[str, str]]  # (letter, text), in order

    def text_of(self, letter: str) -> str | None:
        return next((t for ltr, t in self.options if ltr == letter.strip().strip("()").upper()), None)


def split_choices(question: str) -> Choices:
    """``stem Answer choices: (A) x, (B) y.`` -> stem + [(A, x), (B, y)]; no choices -> the question unchanged."""
    m = CHOICES_RE.search(question)
    if not m:
        return Choices(question.strip(), [])
    options = [(ltr, text.strip().rstrip(",").strip()) for ltr, text in CHOICE_RE.findall(m.group(1))]
    if len(options) < 2:
        return Choices(question.strip(), [])
    return Choices(question[: m.start()].strip(), options)


def strip_final_answer(rationale: str) -> str:
    """The reasoning without the teacher's own closing answer sentence (it is replaced by the fixed one).

    The cut starts at the sentence holding the last "the answer is" / ``\\boxed{}``; a rationale that is
    nothing but that sentence is kept whole rather than emptied.
    """
    text = clean_rationale(rationale)
    marks = [m.start() for m in ANSWER_IS_RE.finditer(text)] + [m.start() for m in BOXED_TAIL_RE.finditer(text)]
    if not marks:
        return text
    at = max(marks)
    start = max(text.rfind(sep, 0, at) for sep in (". ", ".\n", "\n", "! ", "? "))
    head = text[: start + 1].strip() if start >= 0 else ""
    return head or text


def user_message(template: InstructionTemplate, question: str, answer_type: str) -> str:
    ch = split_choices(question)
    q = template.question.format(stem=ch.stem)
    if ch.options:
        q += template.choices.format(
            choices="\n".join(template.choice.format(letter=ltr, text=t) for ltr, t in ch.options)
        )
    instruction = template.instruction.get("choice" if ch.options else answer_type) or template.instruction.get(
        "default"
    )
    if instruction is None:
        raise UserError(
            f"instruction template {template.name!r} has no instruction for {answer_type!r} and no 'default'"
        )
    return template.user.format(instruction=instruction, question=q)


def answer_sentence(template: InstructionTemplate, question: str, label: str, answer_type: str) -> str:
    ch = split_choices(question)
    text = ch.text_of(label) if ch.options else None
    if text is not None and "choice" in template.answer:
        return template.answer["choice"].format(letter=label.strip().strip("()").upper(), text=text, answer=label)
    return template.answer.get(answer_type, template.answer["default"]).format(answer=label, letter=label, text=label)


def to_instruction_example(demo: dict[str, Any], template: InstructionTemplate, answer_type: str) -> dict[str, Any]:
    """One demonstration (a curated teacher record) -> conversational prompt/completion, provenance kept."""
    label = gold_label(demo, answer_type)
    rationale = strip_final_answer(demo.get("rationale") or "")
    sentence = answer_sentence(template, demo["question"], label, answer_type)
    completion = template.assistant.format(rationale=rationale, answer_sentence=sentence).strip()
    return {
        "prompt": [{"role": "user", "content": user_message(template, demo["question"], answer_type)}],
        "completion": [{"role": "assistant", "content": completion}],
        "task": demo.get("task"),
        "example_id": demo.get("example_id"),
        "sample": demo.get("sample"),
        "provenance": demo.get("provenance", {}),
    }


def prompt_mode_name(template: InstructionTemplate) -> str:
    return f"instruct:{template.name}"


def ensure_prompt_mode(template: InstructionTemplate) -> str:
    """Register (once) the prompt mode that asks a question exactly as the template does in training."""
    name = prompt_mode_name(template)
    if name not in PROMPT_MODES:

        def first(ex: Example, ctx: PromptContext) -> str:
            return user_message(template, question_block(ex), ctx.task.answer_type)

        PROMPT_MODES.add(
            name,
            PromptMode(
                name,
                first,
                "default",
                max_tokens=256,
                description=f"instruction-tuned student, template {template.name!r} (use with chat)",
            ),
        )
    return name


for _name in TEMPLATES:
    ensure_prompt_mode(TEMPLATES.get(_name))
