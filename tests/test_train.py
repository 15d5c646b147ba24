"""Student SFT: completion-only loss, weights that change (and LoRA's base weights that do not), resume."""

from __future__ import annotations

import math

import pytest
import torch

from cotbridge.prompts.formats import to_student_examples
from cotbridge.train.config import TrainConfig
from cotbridge.train.label_logprobs import LabelLogProbs
from cotbridge.train.sft import build_trainer, scoring_completion_tokens_only, train_student
from tests.conftest import build_tiny_tokenizer


def tiny_model(tok, layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )


def examples(n=16):
    recs = [
        {
            "question": f"Tom has {i} apples and buys 1. How many?",
            "gold": str(i + 1),
            "rationale": f"{i} + 1 = {i + 1}.",
            "task": "t",
            "example_id": str(i),
            "sample": 0,
            "teacher": {"model": "reference"},
        }
        for i in range(n)
    ]
    return to_student_examples(recs, "finetune_cot", "number")


def test_loss_only_on_the_completion_and_eos_appended(tmp_path):
    tok = build_tiny_tokenizer()
    trainer = build_trainer(
        TrainConfig(lora=False, output_dir=str(tmp_path), batch_size=4), examples(), tiny_model(tok), tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        text = tok.decode([t for t, lab in zip(ids, labels) if lab != -100])
        assert "-->" in text and "###" not in text and "apples" not in text  # the prompt is masked
        assert text.endswith(tok.eos_token)


@pytest.mark.skipif(torch.cuda.is_available(), reason="TRL takes its fused LM-head loss on a CUDA (Triton) device")
def test_cpu_loss_scores_only_labelled_positions_and_equals_the_full_projection(tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, "_use_triton"):
        pytest.skip("this TRL has no fused LM-head loss (the switch is a no-op)")
    tok = build_tiny_tokenizer()
    trainer = build_trainer(
        TrainConfig(lora=False, output_dir=str(tmp_path), batch_size=4), examples(), tiny_model(tok), tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    scored_rows = []

    def recording(owner, name):
        original = owner.apply

        def apply(hidden, *args):
            scored_rows.append((name, hidden.shape[0]))
            return original(hidden, *args)

        monkeypatch.setattr(owner, "apply", apply)

    recording(trl_utils._ChunkedLogProbFunction, "trl")
    recording(LabelLogProbs, "cotbridge")
    with scoring_completion_tokens_only():  # what training runs under
        compact = trainer.compute_loss(trainer.model, dict(batch))
    full = trainer.compute_loss(trainer.model, dict(batch))  # TRL's own choice off Triton devices, restored
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert scored_rows == [("cotbridge", labelled), ("trl", batch["labels"][:, 1:].numel())]
    assert labelled < scored_rows[1][1]
    torch.testing.assert_close(compact, full)


@pytest.mark.parametrize("softcap,temperature,scale", [(None, 1.0, 1.0), (30.0, 0.7, 0.5)])
def test_label_logprobs_match_trls_chunked_function(softcap, temperature, scale):
    """LabelLogProbs replaces TRL's ChunkedLogProbFunction on a CPU: the same five outputs and the same gradients for
    the hidden states, the head's weight and bias (through the log-probabilities and the entropy)."""
    kernels = pytest.importorskip("trl.kernels")
    if not hasattr(kernels, "ChunkedLogProbFunction"):
        pytest.skip("this TRL has no chunked log-prob function")
    n, h, vocab = 1500, 16, 700  # more tokens than one chunk of LabelLogProbs
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(n, h, generator=gen), torch.randn(vocab, h, generator=gen) * 0.3, torch.randn(vocab) * 0.1)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    results = []
    for function in (kernels.ChunkedLogProbFunction, LabelLogProbs):
        hidden, weight, bias = (t.clone().requires_grad_() for t in data)
        outs = function.apply(hidden, weight, bias, targets, temperature, 256, softcap, scale, OUTPUTS)
        (-outs[0].sum() + 0.3 * outs[1].sum()).backward()
        results.append([*outs, hidden.grad, weight.grad, bias.grad])
    for theirs, ours in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


OUTPUTS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU's attention choice: a CUDA device keeps sdpa")
def test_eager_attention_while_training_on_a_cpu_when_its_weights_fit(tmp_path, monkeypatch):
    import cotbridge.train.sft as sft

    tok = build_tiny_tokenizer()
    trainer = build_trainer(TrainConfig(output_dir=str(tmp_path), batch_size=4), examples(), tiny_model(tok), tok)
    base = trainer.model.get_base_model()
    base.set_attn_implementation("sdpa")
    with sft.eager_attention_on_cpu(trainer, trainer_cfg := TrainConfig(batch_size=4)):
        assert base.config._attn_implementation == "eager"
    assert base.config._attn_implementation == "sdpa"
    monkeypatch.setattr(sft, "EAGER_ATTENTION_BYTES", 1)  # long rows: the attention weights would not fit
    with sft.eager_attention_on_cpu(trainer, trainer_cfg):
        assert base.config._attn_implementation == "sdpa"


def test_packing_fills_rows_with_several_examples_and_still_masks_prompts(tmp_path):
    tok = build_tiny_tokenizer()
    cfg = TrainConfig(
        lora=False, output_dir=str(tmp_path), batch_size=2, max_length=256, packing=True, group_by_length=False
    )
    trainer = build_trainer(cfg, examples(), tiny_model(tok), tok)
    batch = next(iter(trainer.get_train_dataloader()))
    # padding-free: one row of concatenated examples, each restarting its positions at 0
    starts = (batch["position_ids"][0] == 0).sum().item()
    assert batch["input_ids"].shape[0] == 1 and starts >= 2
    kept = tok.decode(
        [t for t, lab in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist()) if lab != -100]
    )
    assert kept.count("-->") == starts and "apples" not in kept  # every completion trained, no prompt


def test_packed_examples_do_not_attend_to_each_other():
    """What padding-free packing relies on: restarting position_ids keep packed examples apart (transformers turns
    them into a block-diagonal mask when no attention mask is given, as TRL's padding-free collator does)."""
    tok = build_tiny_tokenizer()
    model = tiny_model(tok).eval()
    a = tok("Q: Tom has 3 apples and buys 4 more. -->", add_special_tokens=False)["input_ids"]
    b = tok("The answer is 7", add_special_tokens=False)["input_ids"]
    positions = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    with torch.no_grad():
        # as in training: no cache (with one, transformers does not look for packed sequences)
        packed = model(input_ids=torch.tensor([a + b]), position_ids=positions, use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        leaking = model(input_ids=torch.tensor([a + b]), use_cache=False).logits[0]  # one long sequence: b sees a
    assert torch.allclose(packed[len(a) :], alone, atol=1e-5)
    assert not torch.allclose(leaking[len(a) :], alone, atol=1e-3)


def test_packing_is_on_with_a_gpu_by_default(monkeypatch):
    from cotbridge.train.config import use_packing

    for gpu in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        assert use_packing(TrainConfig()) is gpu
        assert use_packing(TrainConfig(packing=True)) and not use_packing(TrainConfig(packing=False))


def test_full_fine_tuning_changes_weights_and_logs_finite_loss(tmp_path):
    tok = build_tiny_tokenizer()
    model = tiny_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = train_student(
        TrainConfig(lora=False, output_dir=str(tmp_path), max_steps=4, batch_size=4, logging_steps=1, resume=False),
        examples(),
        model,
        tok,
    )
    assert stats["global_step"] == 4 and len(stats["losses"]) == 4 and all(math.isfinite(x) for x in stats["losses"])
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach().cpu())]
    assert len(changed) == len(before)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()


def test_lora_trains_adapters_and_leaves_base_weights(tmp_path):
    tok = build_tiny_tokenizer()
    model = tiny_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_trainer(
        TrainConfig(lora=True, output_dir=str(tmp_path), max_steps=3, batch_size=4, lr=1e-2), examples(), model, tok
    )
    lora_before = {n: p.detach().cpu().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert lora_before and all(
        not torch.equal(lora_before[n], params[n].detach().cpu()) for n in lora_before if "lora_B" in n
    )
    for name, p in params.items():
        if "lora_" not in name:
            base = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(before[base], p.detach().cpu()), name


def test_lora_layers_adapts_only_the_top_layers_and_the_backward_pass_stops_below_them(tmp_path):
    tok = build_tiny_tokenizer()
    model = tiny_model(tok, layers=4)
    cfg = TrainConfig(lora=True, lora_layers=2, output_dir=str(tmp_path), max_steps=2, batch_size=4, lr=1e-2)
    trainer = build_trainer(cfg, examples(), model, tok)
    adapted = {n.split(".lora_")[0] for n, _ in trainer.model.named_parameters() if "lora_A" in n}
    assert {int(n.split(".layers.")[1].split(".")[0]) for n in adapted} == {2, 3}
    assert len(adapted) == 2 * 7  # all-linear: q, k, v, o, gate, up, down in each adapted layer; not the output head
    assert [n for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" not in n] == []
    # What the layers below hand on carries no gradient: autograd records nothing there, so the backward pass ends
    # at the lowest adapted layer.
    grad_out: dict[int, bool] = {}

    def record(index):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            grad_out[index] = hidden.requires_grad

        return hook

    layers = trainer.model.get_base_model().model.layers
    handles = [layer.register_forward_hook(record(i)) for i, layer in enumerate(layers)]
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    for h in handles:
        h.remove()
    assert grad_out == {0: False, 1: False, 2: True, 3: True}
    params = dict(trainer.model.named_parameters())
    assert all(not torch.equal(lora_before[n], params[n].detach()) for n in lora_before)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"lora_layers": 5}, "has 4 layers, so it must be between 1 and 4"),
        ({"lora_layers": 2, "lora_target_modules": "q_proj|v_proj"}, "a list of module names or all-linear"),
        # PEFT's own error for a target that matches nothing was a traceback after the model had loaded
        ({"lora_target_modules": "bogus_mod"}, r"'bogus_mod' matches no module of .*its linear layers: .*q_proj"),
        ({"lora_target_modules": ["qproj", "vproj"]}, r"lora_target_modules: 'qproj', 'vproj' matches no module"),
    ],
)
def test_lora_layers_out_of_the_models_range_is_one_line(tmp_path, settings, message):
    from cotbridge.errors import UserError

    tok = build_tiny_tokenizer()
    with pytest.raises(UserError, match=message):
        build_trainer(
            TrainConfig(output_dir=str(tmp_path), max_steps=1, **settings), examples(), tiny_model(tok, 4), tok
        )


def test_lora_layers_with_named_target_modules_adapts_those_in_the_top_layers(tmp_path):
    tok = build_tiny_tokenizer()
    cfg = TrainConfig(lora_layers=1, lora_target_modules=["q_proj", "v_proj"], output_dir=str(tmp_path), max_steps=1)
    trainer = build_trainer(cfg, examples(), tiny_model(tok, 3), tok)
    adapted = sorted(n.split(".lora_")[0] for n, _ in trainer.model.named_parameters() if "lora_A" in n)
    assert [n[n.index("layers.") :] for n in adapted] == ["layers.2.self_attn.q_proj", "layers.2.self_attn.v_proj"]


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt("simulated kill")

    tok = build_tiny_tokenizer()
    cfg = TrainConfig(
        lora=False, output_dir=str(tmp_path), max_steps=8, batch_size=4, save_strategy="steps", save_steps=2
    )
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg, examples(), tiny_model(tok), tok, callbacks=[Crash()])
    assert (tmp_path / "checkpoint-4").is_dir() and not (tmp_path / "checkpoint-6").exists()
    stats = train_student(cfg, examples(), tiny_model(tok), tok)
    assert stats["resumed_from"].endswith("checkpoint-4") and stats["global_step"] == 8


def test_sigkilled_cli_training_resumes_with_the_same_number_of_steps(tmp_path):
    """A real crash: `cotbridge train` is SIGKILLed as soon as its first checkpoint is on disk; the same
    command run again resumes from the newest checkpoint and ends at the planned number of optimizer steps."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from cotbridge.jsonl import write_jsonl

    tok = build_tiny_tokenizer()
    model_dir, out = tmp_path / "tiny", tmp_path / "out"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_jsonl(tmp_path / "train.jsonl", examples(32))
    (tmp_path / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                "model": str(model_dir),
                "lora": False,
                "max_steps": 40,
                "batch_size": 4,
                "save_strategy": "steps",
                "save_steps": 5,
                "save_total_limit": 2,
                "logging_steps": 5,
            }
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "cotbridge",
        "train",
        str(tmp_path / "train.jsonl"),
        "--config",
        str(tmp_path / "cfg.yaml"),
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(out.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    saved = sorted(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json"))
    assert saved and saved[-1] < 40 and not (out / "model.safetensors").exists(), "the run finished before the kill"

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["resumed_from"].endswith(f"checkpoint-{saved[-1]}"), (stats["resumed_from"], saved)
    assert stats["global_step"] == 40
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] == 40
    assert (out / "model.safetensors").exists()


@pytest.mark.slow
def test_gguf_student_trains_with_lora(tmp_path):
    """transformers keeps a GGUF 'quantizer' on dequantised GGUF models and Trainer refuses to train them;
    the loader drops it, so the offline default student (SmolLM2 GGUF) trains and saves plain weights."""
    from tests.conftest import SMOLLM2_DIR

    cfg = TrainConfig(
        model=str(SMOLLM2_DIR),
        lora=True,
        max_steps=1,
        batch_size=2,
        save_strategy="no",
        output_dir=str(tmp_path),
        resume=False,
    )
    stats = train_student(cfg, examples(2))
    assert stats["global_step"] == 1 and math.isfinite(stats["train_loss"])
    import json

    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())


def test_gradient_checkpointing_is_off_unless_asked(tmp_path):
    """TRL's SFTConfig turns gradient checkpointing on by default (extra compute); students opt in."""
    tok = build_tiny_tokenizer()
    for wanted in (False, True):
        cfg = TrainConfig(
            lora=False, output_dir=str(tmp_path / str(wanted)), max_steps=1, gradient_checkpointing=wanted
        )
        assert build_trainer(cfg, examples(4), tiny_model(tok), tok).args.gradient_checkpointing is wanted


def test_mixed_precision_setting_reaches_the_trainer_and_bf16_training_runs(tmp_path, monkeypatch):
    from cotbridge.train import config as train_config

    tok = build_tiny_tokenizer()
    for mode, wanted in (("no", False), ("bf16", True)):
        cfg = TrainConfig(
            lora=False,
            output_dir=str(tmp_path / mode),
            max_steps=2,
            batch_size=4,
            logging_steps=1,
            mixed_precision=mode,
            resume=False,
        )
        assert build_trainer(cfg, examples(8), tiny_model(tok), tok).args.bf16 is wanted
    stats = train_student(cfg, examples(8), tiny_model(tok), tok)  # the bf16 run: autocast on CPU, weights stay fp32
    assert stats["global_step"] == 2 and all(math.isfinite(x) for x in stats["losses"])
    # "auto" follows the hardware: bf16 only where the CPU multiplies bf16 natively (without CUDA here)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native in (False, True):
        monkeypatch.setattr(train_config.loading, "cpu_has_native_bf16", lambda native=native: native)
        assert train_config.use_bf16("auto") is native


def test_length_grouped_batches_are_sorted_over_the_whole_dataset_and_shuffled_by_epoch():
    from cotbridge.train.sampling import BucketedLengthSampler

    lengths = [(i * 37) % 101 + 5 for i in range(130)]
    sampler = BucketedLengthSampler(lengths, batch_size=16, seed=3)
    order, batches = list(sampler), sampler.batches()
    assert sorted(order) == list(range(130)) and order == [i for b in batches for i in b]  # every example once
    real = sum(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert real / padded > 0.9  # transformers' megabatches of 2 batches leave ~0.75 here
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest batch first
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(list(sampler)) == list(range(130))


def test_trainer_draws_length_grouped_batches_from_the_bucketed_sampler(tmp_path):
    from cotbridge.train.sampling import BucketedLengthSampler

    tok = build_tiny_tokenizer()
    recs = examples(24)
    for i, r in enumerate(recs):  # very different completion lengths
        r["completion"] = r["completion"] + " and so on" * (i % 6) * 3
    trainer = build_trainer(
        # unpacked rows: on a GPU packing defaults on, and padding-free batches carry no attention mask
        TrainConfig(lora=False, output_dir=str(tmp_path), batch_size=4, seed=1, packing=False),
        recs,
        tiny_model(tok),
        tok,
    )
    assert isinstance(trainer._get_train_sampler(), BucketedLengthSampler)
    spans = [
        int(b["attention_mask"].sum(1).max() - b["attention_mask"].sum(1).min())
        for b in trainer.get_train_dataloader()
    ]
    assert max(spans) < 12  # each batch holds one length level (levels are >= 15 tokens apart)
    random = build_trainer(
        TrainConfig(lora=False, output_dir=str(tmp_path / "r"), batch_size=4, group_by_length=False),
        recs,
        tiny_model(tok),
        tok,
    )
    assert not isinstance(random._get_train_sampler(), BucketedLengthSampler)


@pytest.mark.parametrize("with_bias", [False, True])
def test_label_logprobs_kept_probabilities_give_the_recomputed_gradients_bit_for_bit(monkeypatch, with_bias):
    """When the probabilities fit in KEEP_PROBS_BYTES the backward pass reuses the forward pass's instead of projecting
    again; the chunked fp32 projection (VOCAB_CHUNK columns at a time) is the one product's values.
    Both bit for bit."""
    import cotbridge.train.label_logprobs as llp

    monkeypatch.setattr(llp, "TOKEN_CHUNK", 64)  # several token chunks, each kept separately
    monkeypatch.setattr(llp, "VOCAB_CHUNK", 96)  # several column chunks, the last one partial
    n, h, vocab = 200, 24, 500
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(n, h, generator=gen), torch.randn(vocab, h, generator=gen) * 0.3, torch.randn(vocab) * 0.1)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    assert torch.equal(llp._project(data[0], data[1]), data[0] @ data[1].t())

    def run(keep_bytes):
        monkeypatch.setattr(llp, "KEEP_PROBS_BYTES", keep_bytes)
        hidden, weight, bias = (t.clone().requires_grad_() for t in data)
        outs = LabelLogProbs.apply(hidden, weight, bias if with_bias else None, targets, 1.0, 256, None, 1.0, OUTPUTS)
        (-outs[0] * torch.linspace(0.5, 1.5, n)).sum().backward()  # the SFT loss: log-probabilities only
        return [outs[0], outs[1], hidden.grad, weight.grad, *([bias.grad] if with_bias else [])]

    kept, recomputed = run(2**30), run(0)
    for a, b in zip(kept, recomputed):
        assert torch.equal(a, b)
    assert kept[2].abs().sum() > 0
