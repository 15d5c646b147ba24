"""On-policy distillation (train/on_policy.py on TRL's GKDTrainer), its pre-flight check and the on_policy recipe, on
tiny random models: the teacher is conftest's 2-layer Llama, the student its first layer (models/truncated.py)."""

from __future__ import annotations

import math

import pytest
import torch

from cotbridge.errors import UserError

EXAMPLES = [
    {"prompt": f"Q: Tom has {i} apples and buys 4 more. ###", "completion": f" {i} + 4 = {i + 4}. --> {i + 4}"}
    for i in range(8)
]


@pytest.fixture(scope="module")
def student_dir(tiny_model_dir, tmp_path_factory):
    from cotbridge.models.truncated import truncated_copy

    return truncated_copy(str(tiny_model_dir), tmp_path_factory.mktemp("student"), layers=1)


@pytest.fixture(scope="module")
def other_tokenizer_dir(tmp_path_factory):
    """A tiny Llama whose tokenizer was trained on other text, with a smaller vocabulary: a mismatched teacher."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    out = tmp_path_factory.mktemp("other")
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def on_policy_config(student_dir, teacher_dir, tmp_path, **overrides):
    from cotbridge.train.on_policy import OnPolicyConfig

    settings = dict(
        model=str(student_dir),
        teacher=str(teacher_dir),
        output_dir=str(tmp_path / "out"),
        lr=1e-2,
        max_steps=1,
        batch_size=4,
        max_new_tokens=8,
        logging_steps=1,
        save_strategy="no",
        mixed_precision="no",
        teacher_dtype="float32",
    )
    return OnPolicyConfig(**{**settings, **overrides})


# -- the trainer ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_one_step_moves_the_trainable_weights_and_logs_a_finite_loss(student_dir, tiny_model_dir, tmp_path, lora):
    from cotbridge.train.on_policy import build_on_policy_trainer

    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, lora=lora)
    trainer = build_on_policy_trainer(cfg, EXAMPLES)
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and (not lora or all("lora_" in n for n in trainable))
    assert not any(p.requires_grad for p in trainer.teacher_model.parameters())  # the teacher is frozen
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    moved = [n for n, p in trainer.model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    # LoRA's A matrices get no gradient at the first step (B starts at zero); every B moves
    expected = [n for n in trainable if not lora or "lora_B" in n]
    assert sorted(moved) == sorted(expected)


def test_on_policy_steps_sample_from_the_student(student_dir, tiny_model_dir, tmp_path, monkeypatch):
    """lmbda=1: every step trains on the student's own samples (GKD's generate_on_policy_outputs), never on the
    dataset's completions; lmbda=0: never samples."""
    from trl.experimental.gkd import GKDTrainer

    from cotbridge.train.on_policy import build_on_policy_trainer

    calls = []
    original = GKDTrainer.generate_on_policy_outputs

    def counting(model, inputs, generation_config):
        calls.append(model)
        return original(model, inputs, generation_config)

    monkeypatch.setattr(GKDTrainer, "generate_on_policy_outputs", staticmethod(counting))
    for lmbda, expected in ((1.0, 2), (0.0, 0)):
        calls.clear()
        cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path / str(lmbda), lmbda=lmbda, max_steps=2)
        build_on_policy_trainer(cfg, EXAMPLES).train()
        assert len(calls) == expected


def test_train_on_policy_saves_a_merged_student_and_resumes(student_dir, tiny_model_dir, tmp_path):
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train.on_policy import train_on_policy

    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, lora=True, max_steps=2, save_strategy="steps",
                           save_steps=1)  # fmt: skip
    stats = train_on_policy(cfg, EXAMPLES)
    assert stats["global_step"] == 2 and len(stats["losses"]) == 2 and stats["resumed_from"] is None
    saved, _ = load_model_and_tokenizer(cfg.output_dir)
    start, _ = load_model_and_tokenizer(str(student_dir))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(saved.named_parameters())[name], dict(start.named_parameters())[name])
    assert saved.config.num_hidden_layers == 1  # the truncated student, LoRA merged

    again = train_on_policy(cfg, EXAMPLES)
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == 2
    with pytest.raises(UserError, match=r"holds checkpoints of another training run \(.*beta"):
        train_on_policy(cfg.model_copy(update={"beta": 0.5}), EXAMPLES)


def test_bad_settings_are_one_line(student_dir, tiny_model_dir, tmp_path):
    from cotbridge.config import load_config
    from cotbridge.train.on_policy import OnPolicyConfig, train_on_policy

    prompts_only = [{"prompt": e["prompt"]} for e in EXAMPLES]
    with pytest.raises(UserError, match="lmbda=0.5 trains 50% of steps on the data's completions"):
        train_on_policy(on_policy_config(student_dir, tiny_model_dir, tmp_path, lmbda=0.5), prompts_only)
    with pytest.raises(UserError, match="lmbda"):
        load_config(OnPolicyConfig, sets=["lmbda=1.5"])
    with pytest.raises(UserError, match="packing"):
        load_config(OnPolicyConfig, sets=["packing=true"])


def test_truncated_copy_keeps_the_tokenizer_and_the_first_layers(student_dir, tiny_model_dir, tmp_path):
    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.models.truncated import truncated_copy

    small, small_tok = load_model_and_tokenizer(str(student_dir))
    big, big_tok = load_model_and_tokenizer(str(tiny_model_dir))
    assert small.config.num_hidden_layers == 1 and small_tok.get_vocab() == big_tok.get_vocab()
    big_weights = dict(big.named_parameters())
    for name, p in small.named_parameters():  # every kept weight is the source's
        assert torch.equal(p, big_weights[name]), name
    with pytest.raises(UserError, match="has 2 layers; keep between 1 and 1"):
        truncated_copy(str(tiny_model_dir), tmp_path / "x", layers=2)
