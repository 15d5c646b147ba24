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

    def counting(model, *args):  # TRL < 1 also passes the pad token id
        calls.append(model)
        return original(model, *args)

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


# -- the pre-flight check ---------------------------------------------------------------------------------------------
def test_preflight_passes_a_matched_pair_and_skips_the_served_teacher_with_its_reason(student_dir, tiny_model_dir):
    from cotbridge.train.on_policy import OnPolicyConfig, check_pair

    checks = check_pair(OnPolicyConfig(model=str(student_dir), teacher=str(tiny_model_dir)), top_k=5)
    status = {c["name"]: c["status"] for c in checks}
    assert status == {
        "tokenizer": "pass",
        "output_width": "pass",
        "chat_template": "pass",
        "teacher_logprobs": "pass",
        "served_teacher": "skip",
    }
    assert "no served teacher configured" in checks[-1]["detail"]
    assert "top-5 of" in checks[3]["detail"]


def test_preflight_refuses_a_mismatched_pair_in_one_line(student_dir, other_tokenizer_dir):
    from cotbridge.train.on_policy import OnPolicyConfig, check_pair

    with pytest.raises(UserError) as refused:
        check_pair(OnPolicyConfig(model=str(student_dir), teacher=str(other_tokenizer_dir)))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("student and teacher tokenizers differ in ") and " ids (" in message
    assert message.endswith("use a teacher of the student's family or the SFT recipe (cotbridge run)")


def test_preflight_names_each_other_difference(tiny_model_dir):
    """Same vocabulary but another eos, another output width, another chat template (where prompts use it), a teacher
    with broken weights: each its own one-line refusal."""
    from types import SimpleNamespace

    from cotbridge.models.loading import load_model_and_tokenizer
    from cotbridge.train import preflight as pf

    teacher, tok = load_model_and_tokenizer(str(tiny_model_dir))
    _, other = load_model_and_tokenizer(str(tiny_model_dir))
    other.eos_token = "<|pad|>"
    with pytest.raises(UserError, match=r"eos tokens differ \('<\|endoftext\|>' vs '<\|pad\|>'\)"):
        pf.compare_tokenizers(tok, other)
    wider = SimpleNamespace(get_text_config=lambda: SimpleNamespace(vocab_size=teacher.config.vocab_size + 64))
    with pytest.raises(UserError, match=r"output layer has \d+ logits and the teacher's \d+"):
        pf.compare_output_width(wider, teacher.config)
    other.chat_template = tok.chat_template + " "
    assert pf.compare_chat_templates(tok, other, chat=False).status == "skip"
    with pytest.raises(UserError, match="chat templates differ"):
        pf.compare_chat_templates(tok, other, chat=True)
    with torch.no_grad():
        teacher.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="log-probs are not finite at"):
        pf.check_teacher_logprobs(teacher, tok, top_k=5)


# -- the recipe ----------------------------------------------------------------------------------------------------
def recipe_config(tmp_path, teacher_dir, **overrides):
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig

    settings = {
        "name": "tiny",
        "run_dir": str(tmp_path / "run"),
        "task": "synthetic_coin_flip:k=2,n_test=8",
        "train_limit": 8,
        "truncate": {"model": str(teacher_dir), "layers": 1},
        "rationales": {"teacher": {"backend": "reference", "options": {"error_rate": 0.3}}},
        "student": {"lora": False, "max_steps": 2, "batch_size": 4, "save_strategy": "no", "mixed_precision": "no"},
        "distill": {
            "teacher": str(teacher_dir),
            "teacher_dtype": "float32",
            "max_steps": 2,
            "batch_size": 4,
            "max_new_tokens": 8,
            "save_strategy": "no",
            "mixed_precision": "no",
        },
        "top_k": 5,
        "eval": {"limit": 8, "max_tokens": 8, "batch_size": 8},
    }
    return OnPolicyRunConfig.model_validate({**settings, **overrides})


def stamps(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")}


def test_recipe_runs_end_to_end_resumes_and_redoes_from_a_stage(tiny_model_dir, tmp_path):
    import json

    from cotbridge.recipes.on_policy.recipe import OnPolicy, run_on_policy

    cfg = recipe_config(tmp_path, tiny_model_dir)
    summary = run_on_policy(cfg, progress=False)
    root = tmp_path / "run"
    assert [c["status"] for c in summary["preflight"]] == ["pass", "pass", "pass", "pass", "skip"]
    assert set(summary["results"]) == {"sft_warmup", "on_policy"}
    assert summary["distill"]["global_step"] == 2 and summary["distill"]["teacher"] == str(tiny_model_dir)
    assert json.loads((root / "init" / "config.json").read_text())["num_hidden_layers"] == 1
    curation = json.loads((root / "data" / "curation.json").read_text())
    assert 0 < curation["kept"] < curation["records"] == 8  # the reference teacher's wrong rationales were dropped
    distilled = json.loads((root / "students" / "on_policy" / "training.json").read_text())
    assert distilled["config"]["model"] == str(root / "students" / "sft_warmup")  # distilled from the warmed-up one
    assert distilled["examples"] == curation["kept"]
    assert "on_policy" in (root / "report.md").read_text()

    before = stamps(root)
    run_on_policy(cfg, progress=False)
    changed = [p for p, t in before.items() if p.stat().st_mtime_ns != t and "report" not in p.name]
    assert {p.name for p in changed} <= {"results_table.json", "timings.json"}  # nothing taught, trained, evaluated

    # a changed distillation setting: refused with --from eval (it keeps the distilled student), redone from distill
    changed_cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"beta": 0.5})})
    with pytest.raises(UserError, match=r"--from eval keeps stage 'distill'.*distill\.beta"):
        run_on_policy(changed_cfg, from_stage="eval", progress=False)
    run_on_policy(changed_cfg, from_stage="distill", progress=False)
    after = stamps(root)
    warm, distilled = (root / "students" / n / "model.safetensors" for n in ("sft_warmup", "on_policy"))
    assert after[warm] == before[warm] and after[distilled] != before[distilled]
    assert after[root / "preflight.json"] == before[root / "preflight.json"]
    assert [s.name for s in OnPolicy(cfg).stages()] == [
        "preflight", "init", "teach", "curate", "warmup", "distill", "eval", "report"
    ]  # fmt: skip


def test_recipe_refuses_a_mismatched_teacher_before_any_training(tiny_model_dir, other_tokenizer_dir, tmp_path):
    from cotbridge.recipes.on_policy.recipe import run_on_policy

    cfg = recipe_config(tmp_path, tiny_model_dir)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"teacher": str(other_tokenizer_dir)})})
    with pytest.raises(UserError, match="tokenizers differ in"):
        run_on_policy(cfg, progress=False)
    assert not (tmp_path / "run" / "students").exists() and not (tmp_path / "run" / "teacher").exists()


def test_recipe_without_rationales_distils_from_the_training_questions(tiny_model_dir, tmp_path):
    import json

    from cotbridge.recipes.on_policy.recipe import run_on_policy

    cfg = recipe_config(tmp_path, tiny_model_dir, rationales=None, warmup=False)
    summary = run_on_policy(cfg, progress=False)
    assert set(summary["results"]) == {"on_policy"} and not (tmp_path / "run" / "teacher").exists()
    training = json.loads((tmp_path / "run" / "students" / "on_policy" / "training.json").read_text())
    assert training["examples"] == 8 and training["config"]["model"] == str(tmp_path / "run" / "init")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"rationales": None}, "warmup: true trains on teacher rationales"),
        ({"rationales": None, "warmup": False, "distill": {"lmbda": 0.5}}, "distill.lmbda=0.5 trains some steps"),
        ({"distill": {"model": "x"}}, "distill.model / distill.output_dir are set by the recipe"),
        ({"student": {"model": "x"}}, "student.model and truncate both name the starting student"),
    ],
)
def test_incoherent_recipe_configs_are_one_line(tmp_path, overrides, message):
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig

    data = {"truncate": {"layers": 2}, **overrides}
    with pytest.raises(UserError, match=message):
        OnPolicyRunConfig.model_validate(data)


def test_recipe_yamls_load():
    from pathlib import Path

    from cotbridge.config import load_config
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig
    from cotbridge.recipes.on_policy.recipe import OnPolicy

    root = Path(__file__).resolve().parents[1] / "recipes"
    offline = load_config(OnPolicyRunConfig, root / "on_policy_offline.yaml")
    qwen = load_config(OnPolicyRunConfig, root / "on_policy_qwen3.yaml")
    for cfg in (offline, qwen):
        OnPolicy(cfg, progress=False).stages()
    assert offline.truncate.layers == 10 and offline.distill.teacher == "smollm2-135m-instruct"
    assert (qwen.student.model, qwen.distill.teacher, qwen.format) == ("Qwen/Qwen3-1.7B", "Qwen/Qwen3-8B", "chat")


def test_preflight_command_prints_the_checks_and_refuses_in_one_line(
    tiny_model_dir, other_tokenizer_dir, student_dir, tmp_path
):
    import subprocess
    import sys

    import yaml

    config = tmp_path / "pair.yaml"
    config.write_text(
        yaml.safe_dump({"student": {"model": str(student_dir)}, "distill": {"teacher": str(tiny_model_dir)}})
    )
    cmd = [sys.executable, "-m", "cotbridge", "preflight", str(config)]
    passed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert (
        "pass  tokenizer:" in passed.stdout and "skip  served_teacher: no served teacher configured" in passed.stdout
    )
    refused = subprocess.run(
        [*cmd, "--set", f"distill.teacher={other_tokenizer_dir}"], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tokenizers differ in" in errors[0]


def test_prompt_only_rows_train_on_the_students_samples_with_a_finite_loss(student_dir, tiny_model_dir, tmp_path):
    """Rows without a completion (on-policy prompts): TRL's GKD divided the loss by the dataset's completion tokens,
    zero here (an infinite loss, NaN weights after one step); it now averages over the sampled tokens."""
    from cotbridge.train.on_policy import build_on_policy_trainer

    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, max_steps=2)
    trainer = build_on_policy_trainer(cfg, [{"prompt": e["prompt"]} for e in EXAMPLES])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_rows_mark_the_completion_end_with_eos_and_keep_prompt_only_rows_without_one():
    from cotbridge.train.on_policy import tokenized
    from tests.conftest import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    prompt, completion = "Q: Tom has 3 apples. ###", " 3 + 4 = 7. --> 7"
    row = tokenized({"prompt": prompt, "completion": completion}, tok, 512)
    n = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert row["input_ids"][:n] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert row["completion_mask"] == [0] * n + [1] * (len(row["input_ids"]) - n)
    assert row["input_ids"][-1] == tok.eos_token_id and tok.decode(row["input_ids"][n:-1]) == completion
    bare = tokenized({"prompt": prompt}, tok, 512)
    assert bare["input_ids"] == row["input_ids"][:n] and not any(bare["completion_mask"])
    cut = tokenized({"prompt": prompt, "completion": completion}, tok, n + 2)
    assert len(cut["input_ids"]) == len(cut["completion_mask"]) == n + 2
    chat = tokenized(
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yes"}]},
        tok,
        512,
    )
    assert chat["prompt"] == "<user>hi\n<assistant>" and tok.decode(chat["input_ids"]).startswith(
        chat["prompt"] + "yes"
    )


def test_a_teacher_that_does_not_fit_is_one_line(student_dir, tiny_model_dir, tmp_path, monkeypatch):
    import cotbridge.models.loading as loading
    from cotbridge.train.on_policy import load_teacher

    def out_of_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 15.26 GiB")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", out_of_memory)
    with pytest.raises(UserError, match=r"does not fit in memory beside the student .*distill.teacher_url"):
        load_teacher(on_policy_config(student_dir, tiny_model_dir, tmp_path))
