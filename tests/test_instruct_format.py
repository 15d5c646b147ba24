"""Instruction formatter: choices, the teacher's own answer sentence, the fixed gold answer sentence, and the
student's chat template (training render = evaluation render + completion; TRL's loss mask = the answer turn)."""

from __future__ import annotations

import pytest

from cotbridge.errors import UserError
from cotbridge.prompts.modes import PROMPT_MODES, PromptContext
from cotbridge.recipes.instruct.instruction_format import (
    TEMPLATES,
    answer_sentence,
    ensure_prompt_mode,
    load_template,
    split_choices,
    strip_final_answer,
    to_instruction_example,
    user_message,
)
from cotbridge.tasks import Example, get_task
from tests.conftest import SMOLLM2_DIR, build_tiny_tokenizer

CSQA_Q = (
    "The sanctions against the school were a punishing blow, and they seemed to what the efforts the school had "
    "made to change? Answer choices: (A) ignore, (B) enforce, (C) authoritarian, (D) yell at, (E) avoid."
)
TEMPLATE = TEMPLATES.get("ranaldi_freitas")


@pytest.mark.parametrize(
    "question,stem,options",
    [
        (
            CSQA_Q,
            "The sanctions against the school were a punishing blow, and they seemed to what the efforts the school "
            "had made to change?",
            [("A", "ignore"), ("B", "enforce"), ("C", "authoritarian"), ("D", "yell at"), ("E", "avoid")],
        ),
        # CSQA has choices with a space before the comma, and commas inside a choice must not split it.
        (
            "What forms? Answer choices: (A) ice cream , (B) chipped, (C) red, white, and blue, (D) x, (E) y.",
            "What forms?",
            [("A", "ice cream"), ("B", "chipped"), ("C", "red, white, and blue"), ("D", "x"), ("E", "y")],
        ),
        (
            "Alice has a ball. Which choice is true? Answer choices: (A) red ball, (B) blue ball, (C) green ball.",
            "Alice has a ball.",
            [("A", "red ball"), ("B", "blue ball"), ("C", "green ball")],
        ),
        (
            "Tom has 3 apples and buys 4 more. How many apples?",
            "Tom has 3 apples and buys 4 more. How many apples?",
            [],
        ),
    ],
)
def test_split_choices(question, stem, options):
    ch = split_choices(question)
    assert ch.stem == stem and ch.options == options


@pytest.mark.parametrize(
    "rationale,expected",
    [
        # gpt-3.5-turbo (Re2, CommonsenseQA): the boxed answer sentence goes.
        (
            "A police officer is likely to work for a city. So the correct answer is \\boxed{(C) \\text{city}}.",
            "A police officer is likely to work for a city.",
        ),
        # gpt-3.5-turbo (Re2, GSM8K): a final sentence on its own line.
        (
            "Adding these together, 2 + 1 = 3 bolts in total.\n\nSo, the final answer is \\boxed{3}.",
            "Adding these together, 2 + 1 = 3 bolts in total.",
        ),
        # PaLM (distilling-step-by-step, SVAMP): expression answer, then few-shot run-on text.
        (
            "Luke scored 84 points in 2 rounds. 84 / 2 = 42. The answer is (84 / 2).\n\n"
            "Q: There are 120 students. The answer is (120 /",
            "Luke scored 84 points in 2 rounds. 84 / 2 = 42.",
        ),
        # PaLM (CQA): lower-case choice letter.
        (
            "The answer must be a place where a bum would live. "
            "Of the above choices, only a train station is a place where a bum would live. "
            "So the answer is (c) train station.",
            "The answer must be a place where a bum would live. "
            "Of the above choices, only a train station is a place where a bum would live.",
        ),
        ("No marker here, 3 + 4 = 7.", "No marker here, 3 + 4 = 7."),
        ("The answer is 5.", "The answer is 5."),  # nothing but the answer: kept rather than emptied
    ],
)
def test_strip_final_answer_on_real_teacher_outputs(rationale, expected):
    assert strip_final_answer(rationale) == expected


def test_demonstration_becomes_instruction_with_gold_answer_sentence():
    demo = {
        "question": CSQA_Q,
        "gold": "A",
        "task": "commonsense_qa",
        "example_id": "0",
        "sample": 0,
        # the teacher picked another letter in a sentence that must not survive
        "rationale": "Sanctions ignore the efforts. So the answer is (B) enforce.",
        "provenance": {"teacher": "palm-540b", "family": "google-palm"},
    }
    ex = to_instruction_example(demo, TEMPLATE, "choice")
    user = ex["prompt"][0]["content"]
    assert ex["prompt"][0]["role"] == "user" and user.startswith(TEMPLATE.instruction["choice"])
    assert "\nAnswer choices:\nA) ignore\nB) enforce\nC) authoritarian\nD) yell at\nE) avoid" in user
    assert ex["completion"] == [
        {"role": "assistant", "content": "Sanctions ignore the efforts.\nThe answer is A) ignore"}
    ]
    assert ex["provenance"]["teacher"] == "palm-540b" and ex["example_id"] == "0"
    num = to_instruction_example(
        {"question": "Each pack costs 76 dollars ...", "gold": "51.0", "rationale": "76 - 25 = 51."},
        TEMPLATE,
        "number",
    )
    assert num["completion"][0]["content"].endswith("\nThe answer is 51")  # gold label without the trailing .0
    assert num["prompt"][0]["content"].startswith(TEMPLATE.instruction["default"])
    assert answer_sentence(TEMPLATE, "Is it? ", "yes", "yesno") == "The answer is yes"


def test_eval_prompt_mode_asks_exactly_what_training_taught():
    mode = PROMPT_MODES.get(ensure_prompt_mode(TEMPLATE))
    task = get_task("commonsense_qa")
    ex = Example(id="0", question=CSQA_Q, answer="A")
    train = to_instruction_example({"question": CSQA_Q, "gold": "A", "rationale": "r."}, TEMPLATE, "choice")
    assert mode.first(ex, PromptContext(task=task)) == train["prompt"][0]["content"]
    assert mode.pipeline == "default"  # reads "The answer is B) text" as B


def _render(tokenizer, example):
    prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return prompt, full


@pytest.mark.parametrize("which", [pytest.param("smollm2", marks=pytest.mark.slow), "tiny"])
def test_chat_template_render_prompt_is_prefix_and_completion_is_the_assistant_turn(which):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2_DIR) if which == "smollm2" else build_tiny_tokenizer()
    ex = to_instruction_example(
        {"question": CSQA_Q, "gold": "A", "rationale": "Sanctions ignore efforts."}, TEMPLATE, "choice"
    )
    prompt, full = _render(tok, ex)
    assert full.startswith(prompt)  # what the student sees at eval time is exactly the training prefix
    rest = full[len(prompt) :]
    assert rest.startswith("Sanctions ignore efforts.\nThe answer is A) ignore")
    if which == "smollm2":
        assert "<|im_start|>user\nChoose the answer" in prompt and prompt.endswith("<|im_start|>assistant\n")
        assert rest == "Sanctions ignore efforts.\nThe answer is A) ignore<|im_end|>\n"


def test_trl_masks_everything_but_the_answer_turn(tiny_model_dir, tmp_path):
    """TRL tokenizes the conversational examples; the loss mask must cover the assistant turn only."""
    from cotbridge.train.config import TrainConfig
    from cotbridge.train.sft import build_trainer

    ex = to_instruction_example(
        {"question": "Tom has 3 apples and buys 4 more. How many?", "gold": "7", "rationale": "3 + 4 = 7."},
        TEMPLATE,
        "number",
    )
    cfg = TrainConfig(model=str(tiny_model_dir), lora=False, max_steps=1, save_strategy="no", output_dir=str(tmp_path))
    trainer = build_trainer(cfg, [ex, ex])
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    # TRL >= 1.7 stores the masked labels; earlier versions a completion_mask the collator applies.
    keep = [lab != -100 for lab in row["labels"]] if "labels" in row else [bool(m) for m in row["completion_mask"]]
    target = tok.decode([t for t, k in zip(row["input_ids"], keep) if k])
    assert target.startswith("3 + 4 = 7.\nThe answer is 7")
    assert "How many" not in target and "Think step by step" not in target


def test_templates_load_from_yaml_and_unknown_names_suggest(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("instruction: {default: 'Solve it step by step.'}\nuser: '{instruction} {question}'\n")
    t = load_template(str(path))
    assert (
        t.name == "mine"
        and user_message(t, "What is 2+2?", "number") == "Solve it step by step. Question: What is 2+2?"
    )
    with pytest.raises(UserError, match="did you mean 'ranaldi_freitas'"):
        load_template("ranaldi_freitass")
    bad = tmp_path / "bad.yaml"
    bad.write_text("instructions: {default: x}\n")
    with pytest.raises(UserError, match="bad.yaml"):
        load_template(str(bad))
