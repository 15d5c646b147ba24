"""A teacher that knows the gold answers: it finds the question in the prompt and answers it correctly.

For testing pipelines end to end (servers, retries, resume) where the model's quality must not matter. It answers in
the form the prompt asks for, so every prompt mode's extraction reads the gold: a prompt that ends in an answer trigger
("Therefore, the answer (arabic numerals) is": stage 2 of zero-shot-CoT, or zero-shot) gets the bare answer, as the
``answer_stage`` pipeline takes the first candidate; any other prompt gets a rationale whose last candidate and "the
answer is" both give the gold (``default``, ``lmeval``, ``finetune_cot``).
"""

from __future__ import annotations

import re
from typing import Any

from cotbridge.answers.extract import ANSWER_IS_RE
from cotbridge.backends.base import BACKENDS, Completion, Request, ResultCallback
from cotbridge.backends.replay import normalize_question
from cotbridge.errors import UserError
from cotbridge.tasks import Example, parse_task_spec

QUESTION_RE = re.compile(r"Q: (.*?)\nA:", re.DOTALL)


def _last_text(req: Request) -> str:
    """The text the completion continues: the prompt, or the last message (a continued assistant turn in stage 2)."""
    if req.prompt is not None:
        return req.prompt
    return str((req.messages or [{}])[-1].get("content") or "")


def asks_for_the_answer(req: Request) -> bool:
    """Stage 2 of zero-shot-CoT or a zero-shot prompt: the text ends in an answer trigger ("... the answer is")."""
    if req.meta.get("stage") == "answer":
        return True
    text = _last_text(req)
    triggers = list(ANSWER_IS_RE.finditer(text))
    return bool(triggers) and not text[triggers[-1].end() :].strip()


class OracleBackend:
    kind = "oracle"
    cacheable = False

    def __init__(
        self, model: str = "oracle", *, task: str, split: str = "train", data_dir: str | None = None, **_: Any
    ):
        t, params = parse_task_spec(task)
        self.model_id = f"oracle:{t.name}"
        self.gold = {normalize_question(ex.question): ex.answer for ex in t.load(split, data_dir, **params)}

    def answer(self, req: Request) -> str:
        example = req.meta.get("example")
        text = req.prompt if req.prompt is not None else (req.messages or [{}])[0].get("content", "")
        # In process the request names its question; over HTTP only the "Q: … A:" of the prompt does.
        asked = [example.question] if isinstance(example, Example) else []
        asked += reversed(QUESTION_RE.findall(text or ""))
        gold = next((g for q in asked if (g := self.gold.get(normalize_question(q))) is not None), None)
        if gold is None:
            task = self.model_id.removeprefix("oracle:")
            raise UserError(
                f"oracle backend: the prompt holds no question of {task}; over HTTP it finds only a 'Q: … A:' "
                "prompt (modes zero_shot, zero_shot_cot, zero_shot_cot_single, few_shot_cot)"
            )
        return gold

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for i, req in enumerate(requests):
            gold = self.answer(req)
            prompt_tokens = len(str(req.prompt or req.messages).split())
            if asks_for_the_answer(req):
                comps = [
                    Completion(f" {gold}.", "stop", prompt_tokens=prompt_tokens, completion_tokens=2)
                    for _ in range(req.n)
                ]
            else:
                # the sample index keeps diverse samples apart; the gold is the last candidate, after "the answer is"
                comps = [
                    Completion(
                        f" Working it out (sample {j}) gives {gold}. Therefore, the answer is {gold}.",
                        "stop",
                        prompt_tokens=prompt_tokens,
                        completion_tokens=12,
                    )
                    for j in range(req.first_sample, req.first_sample + req.n)
                ]
            out.append(comps)
            if on_result is not None:
                on_result(i, comps)
        return out


BACKENDS.add("oracle", OracleBackend)
