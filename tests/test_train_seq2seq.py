"""Encoder-decoder students (tiny T5) and the dev-accuracy callback.

Seq2seq: the encoder sees the question without `` ###``, labels are the target + EOS with -100 at the
padding, full fine-tuning changes weights, LoRA leaves base weights, a path-given T5 is dispatched to the
Seq2SeqTrainer, and a killed run resumes. Dev callback: ``dev_accuracy`` is logged every epoch, the best
step is recorded, kept on disk and (with ``dev_select_best``) becomes the saved student.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from cotbridge.errors import UserError
from cotbridge.models.student_io import encoder_input
from cotbridge.tasks.base import Example
from cotbridge.train.config import TrainConfig
from cotbridge.train.seq2seq import to_seq2seq_pair
from cotbridge.train.sft import build_trainer, train_student
from tests.conftest import build_tiny_tokenizer
from tests.test_train import examples, tiny_model


def tiny_t5(tok):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    return T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(tok),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
    )  # T5 starts decoding from the pad token


def dev_examples(n=4):
    return [
        Example(id=f"d{i}", question=f"Tom has {i} apples and buys 1. How many?", answer=str(i + 1)) for i in range(n)
    ]


def test_pairs_drop_the_decoder_only_separator():
    ex = examples(1)[0]
    assert ex["prompt"].endswith(" ###") and ex["completion"].startswith(" ")
    pair = to_seq2seq_pair(ex)
    assert pair == {"source": ex["prompt"][:-4], "target": ex["completion"][1:]}
    assert encoder_input("Q ###") == "Q" and encoder_input("Q") == "Q"
    assert to_seq2seq_pair({"source": "a", "target": "b"}) == {"source": "a", "target": "b"}
    with pytest.raises(UserError, match="chat"):
        to_seq2seq_pair(
            {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}
        )


def test_labels_are_the_target_with_eos_and_padding_masked(tmp_path):
    tok = build_tiny_tokenizer()
    model = tiny_t5(tok)
    # random batches: length-grouped ones would hold equal-length targets and no padding to check
    trainer = build_trainer(
        TrainConfig(lora=False, output_dir=str(tmp_path), batch_size=4, group_by_length=False), examples(), model, tok
    )
    assert type(trainer).__name__ == "Seq2SeqTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["decoder_input_ids"][:, 0] == tok.pad_token_id).all()  # shifted right after the start token
    saw_padding = False
    for ids, labels, mask in zip(
        batch["input_ids"].tolist(), batch["labels"].tolist(), batch["attention_mask"].tolist()
    ):
        source = tok.decode([t for t, m in zip(ids, mask) if m])
        assert "apples" in source and "###" not in source
        kept = [t for t in labels if t != -100]
        assert kept[-1] == tok.eos_token_id and tok.pad_token_id not in kept
        assert labels[len(kept) :] == [-100] * (len(labels) - len(kept))  # padding only at the end, all masked
        saw_padding |= len(kept) < len(labels)
        text = tok.decode(kept[:-1])
        assert "-->" in text and not text.startswith(" ") and "apples" not in text
    assert saw_padding


def test_full_fine_tuning_changes_weights_and_saves_a_seq2seq_model(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    tok = build_tiny_tokenizer()
    model = tiny_t5(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = train_student(
        TrainConfig(
            lora=False, output_dir=str(tmp_path), max_steps=4, batch_size=4, logging_steps=1, lr=1e-3, resume=False
        ),
        examples(),
        model,
        tok,
    )
    assert stats["global_step"] == 4 and len(stats["losses"]) == 4 and all(math.isfinite(x) for x in stats["losses"])
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach().cpu())]
    assert len(changed) == len(before)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert reloaded.config.is_encoder_decoder and (tmp_path / "tokenizer.json").exists()


def test_lora_from_a_model_folder_merges_and_leaves_base_weights(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    tok = build_tiny_tokenizer()
    base_dir, out = tmp_path / "t5", tmp_path / "out"
    base = tiny_t5(tok)
    base.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    # No model object: train_student reads the config, sees an encoder-decoder and loads it as one.
    cfg = TrainConfig(model=str(base_dir), lora=True, output_dir=str(out), max_steps=3, batch_size=4, lr=1e-2)
    stats = train_student(cfg, examples(), None, None)
    assert stats["global_step"] == 3 and all(math.isfinite(x) for x in stats["losses"])
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter and any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
    merged = AutoModelForSeq2SeqLM.from_pretrained(out)
    base_sd, merged_sd = base.state_dict(), merged.state_dict()
    diff = {k for k in base_sd if not torch.equal(base_sd[k], merged_sd[k])}
    # The merge moved the adapted linear layers only; embeddings and layer norms are the base weights.
    assert diff and all(k.split(".")[-2] in {"q", "k", "v", "o", "wi", "wo"} and k.endswith(".weight") for k in diff)
    assert not any("shared" in k or "layer_norm" in k for k in diff)


def test_killed_seq2seq_run_resumes_from_last_checkpoint(tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill")

    tok = build_tiny_tokenizer()
    cfg = TrainConfig(
        lora=False, output_dir=str(tmp_path), max_steps=4, batch_size=4, save_strategy="steps", save_steps=2
    )
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg, examples(), tiny_t5(tok), tok, callbacks=[Crash()])
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()
    stats = train_student(cfg, examples(), tiny_t5(tok), tok)
    assert stats["resumed_from"].endswith("checkpoint-2") and stats["global_step"] == 4
    assert (tmp_path / "model.safetensors").exists()


def test_dev_callback_logs_accuracy_each_epoch_and_selects_the_best(tmp_path):
    tok = build_tiny_tokenizer()
    cfg = TrainConfig(
        lora=False,
        output_dir=str(tmp_path),
        epochs=2,
        batch_size=4,
        logging_steps=1,
        resume=False,
        save_total_limit=1,
        dev_max_tokens=8,
        dev_select_best=True,
        packing=False,  # steps counted in rows of 4 (a GPU packs by default: fewer, fuller rows)
    )
    stats = train_student(cfg, examples(8), tiny_model(tok), tok, dev_examples=dev_examples(), task="multiarith")
    assert [h["step"] for h in stats["dev"]] == [2, 4]  # 8 examples / batch 4 = 2 steps an epoch
    assert all(0.0 <= h["dev_accuracy"] <= 1.0 for h in stats["dev"])
    best = stats["best_dev"]
    assert best == max(stats["dev"], key=lambda h: h["dev_accuracy"]) | {"checkpoint": best["checkpoint"]}
    # The best step's checkpoint survives save_total_limit=1 and its weights became the saved student.
    assert best["checkpoint"] and best["checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert stats["selected"] == best["checkpoint"]
    saved, chosen = load_file(tmp_path / "model.safetensors"), load_file(f"{best['checkpoint']}/model.safetensors")
    assert all(torch.equal(saved[k], chosen[k]) for k in chosen)
    # trainer_state.json carries the dev history and the best step (what a resumed run continues from).
    state = json.loads((tmp_path / f"checkpoint-{best['step']}" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "dev_accuracy" in h] == [
        h["step"] for h in stats["dev"] if h["step"] <= best["step"]
    ]
    assert state["best_global_step"] == best["step"]
    assert tok.padding_side == "right"  # the generation backend's left padding did not leak into training


def test_dev_callback_with_lora_every_other_epoch(tmp_path):
    tok = build_tiny_tokenizer()
    cfg = TrainConfig(
        lora=True,
        output_dir=str(tmp_path),
        epochs=3,
        batch_size=4,
        lr=1e-2,
        resume=False,
        dev_max_tokens=4,
        dev_every_epochs=2,
        dev_select_best=True,
        packing=False,  # steps counted in rows of 4 (a GPU packs by default: fewer, fuller rows)
    )
    stats = train_student(cfg, examples(8), tiny_model(tok), tok, dev_examples=dev_examples(2), task="multiarith")
    assert [h["step"] for h in stats["dev"]] == [4, 6]  # epoch 2, then after the last step (epoch 3)
    # Selecting the best step reloads its adapter before the merge.
    best = stats["best_dev"]["checkpoint"]
    assert best and stats["selected"] == best
    saved, chosen = (
        load_file(tmp_path / "adapter" / "adapter_model.safetensors"),
        load_file(f"{best}/adapter_model.safetensors"),
    )
    assert saved.keys() == chosen.keys() and all(torch.equal(saved[k], chosen[k]) for k in chosen)


def test_dev_examples_need_a_task_and_a_known_mode(tmp_path):
    tok = build_tiny_tokenizer()
    with pytest.raises(UserError, match="task"):
        train_student(
            TrainConfig(output_dir=str(tmp_path)), examples(4), tiny_model(tok), tok, dev_examples=dev_examples()
        )
    with pytest.raises(UserError, match="prompt mode"):
        train_student(
            TrainConfig(output_dir=str(tmp_path), dev_mode="nope"),
            examples(4),
            tiny_model(tok),
            tok,
            dev_examples=dev_examples(),
            task="multiarith",
        )


def test_seq2seq_dev_callback_logs_accuracy_and_feeds_the_encoder_the_bare_question(tmp_path):
    from cotbridge.train.callbacks import DevAccuracyCallback, _live_backend

    seen = []

    def spy(model, tok):  # the default backend, recording what the encoder is given
        backend = _live_backend(model, tok)
        generate = backend.generate
        backend.generate = lambda reqs, **kw: (seen.extend(backend.render(r) for r in reqs), generate(reqs, **kw))[1]
        return backend

    tok = build_tiny_tokenizer()
    # No trainer attached: the scores go straight into state.log_history.
    dev = DevAccuracyCallback("multiarith", dev_examples(), max_tokens=8, backend_factory=spy)
    cfg = TrainConfig(lora=False, output_dir=str(tmp_path), epochs=1, batch_size=4, resume=False)
    stats = train_student(cfg, examples(8), tiny_t5(tok), tok, callbacks=[dev])
    entries = [
        h
        for h in json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
        if "dev_accuracy" in h
    ]
    assert len(entries) == 1 and entries[0]["step"] == 2 and 0.0 <= entries[0]["dev_accuracy"] <= 1.0
    summary = DevAccuracyCallback.summary(type("State", (), {"log_history": entries, "best_model_checkpoint": None}))
    assert summary["best_dev"]["step"] == 2 and summary["best_dev"]["checkpoint"] is None
    assert seen == [e.question for e in dev_examples()] and stats["global_step"] == 2
