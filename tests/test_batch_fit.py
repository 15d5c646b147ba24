"""batch_size "auto": 8 rows on a CPU; on a GPU the largest power of two (up to 64) its free memory holds, with
transformers halving it on an out-of-memory step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cotbridge.train import batch_fit
from cotbridge.train.batch_fit import AUTO_MAX_ROWS, CPU_ROWS, fitting_rows, row_bytes, train_batch_size
from cotbridge.train.config import TrainConfig
from cotbridge.train.sft import build_trainer, train_student
from tests.conftest import build_tiny_tokenizer
from tests.test_train import examples, tiny_model

GB = 10**9
SMOLLM2 = SimpleNamespace(hidden_size=576, num_hidden_layers=30, vocab_size=49152)


def test_fitting_rows_is_the_largest_power_of_two_in_the_budget():
    assert fitting_rows(per_row=GB, free_bytes=1000 * GB) == AUTO_MAX_ROWS  # capped
    assert fitting_rows(per_row=GB, free_bytes=20 * GB) == 8  # 0.7 x 20 = 14 GB: 8 rows, not 16
    assert fitting_rows(per_row=GB, free_bytes=20 * GB, fixed_bytes=8 * GB) == 4  # optimizer state comes first
    assert fitting_rows(per_row=GB, free_bytes=GB // 2) == 1  # never 0: the OOM halving reports what fits
    assert fitting_rows(per_row=1, free_bytes=GB, cap=48) == 32


def test_row_bytes_grows_with_tokens_layers_and_precision():
    bf16 = row_bytes(SMOLLM2, 512, value_bytes=2)
    assert row_bytes(SMOLLM2, 1024, value_bytes=2) == 2 * bf16
    assert row_bytes(SMOLLM2, 512, value_bytes=4) > bf16
    deeper = SimpleNamespace(**{**vars(SMOLLM2), "num_hidden_layers": 60})
    assert row_bytes(deeper, 512, 2) > bf16
    # 512 tokens of SmolLM2-135M: ~0.3 GB of activations and ~0.2 GB of logits
    assert 0.3 * GB < bf16 < 0.7 * GB


def test_numbers_pass_through_and_auto_is_eight_rows_on_a_cpu():
    model = tiny_model(build_tiny_tokenizer())
    assert train_batch_size(4, model, 512, lora=True, mixed_bf16=False) == 4
    assert train_batch_size("auto", model, 512, lora=True, mixed_bf16=False) == CPU_ROWS
    assert not batch_fit.finds_batch_on_oom("auto", model)


class _FakeGpuModel:
    """What train_batch_size reads of a model on a GPU: its parameters' device, size and dtype, and its config."""

    def __init__(self, params: int):
        self.config = SMOLLM2
        self.param = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32, numel=lambda: params)

    def parameters(self):
        return iter([self.param])


@pytest.mark.parametrize(
    ("free_gb", "lora", "rows"),
    [
        (130, True, 64),  # an H200: the cap
        (8, True, 8),  # 0.7 x 8 GB over ~0.5 GB rows of 512 bf16 tokens: 11 -> 8
        (8, False, 4),  # full fine-tuning: 135M x 16 bytes of optimizer state first (2.2 GB)
        (0.2, True, 1),
    ],
)
def test_auto_on_a_gpu_sizes_the_batch_from_free_memory(monkeypatch, free_gb, lora, rows):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gb * GB), 141 * GB))
    model = _FakeGpuModel(params=135_000_000)
    assert train_batch_size("auto", model, 512, lora=lora, mixed_bf16=True) == rows
    assert batch_fit.finds_batch_on_oom("auto", model)
    assert not batch_fit.finds_batch_on_oom(16, model)  # a number the user chose is kept, and fails loudly


def test_the_trainer_gets_the_resolved_batch(tmp_path):
    tok = build_tiny_tokenizer()
    trainer = build_trainer(TrainConfig(output_dir=str(tmp_path)), examples(), tiny_model(tok), tok)
    assert TrainConfig().batch_size == "auto"
    assert trainer.args.per_device_train_batch_size == CPU_ROWS
    assert trainer.args.auto_find_batch_size is False
    stats = train_student(TrainConfig(output_dir=str(tmp_path / "s"), max_steps=1), examples(4), tiny_model(tok), tok)
    assert stats["batch_size"] == CPU_ROWS  # what ran is recorded in the training stats
    trainer = build_trainer(TrainConfig(output_dir=str(tmp_path), batch_size=2), examples(), tiny_model(tok), tok)
    assert trainer.args.per_device_train_batch_size == 2


def test_checkpoints_from_the_old_default_batch_name_the_set_that_resumes_them(tmp_path):
    """Checkpoints trained when batch_size defaulted to 8: resuming under "auto" is refused (the batch could differ
    on a GPU), naming --set batch_size=8, which resumes them."""
    from cotbridge.errors import UserError
    from cotbridge.jsonl import write_json
    from cotbridge.train.sft import training_fingerprint, training_folder

    rows = [{"prompt": "2+2?", "completion": "4"}]
    old = training_fingerprint(TrainConfig(output_dir=str(tmp_path), batch_size=8), rows)
    write_json(tmp_path / "training.json", old)
    (tmp_path / "checkpoint-4").mkdir()
    with pytest.raises(
        UserError, match=r"config.batch_size: 8 -> 'auto'.*keep the recorded defaults: --set batch_size=8$"
    ):
        with training_folder(TrainConfig(output_dir=str(tmp_path)), rows):
            pass
    with training_folder(TrainConfig(output_dir=str(tmp_path), batch_size=8), rows):
        pass


def test_a_step_out_of_memory_shrinks_the_batch_and_training_goes_on(tmp_path):
    """What auto_find_batch_size (on for "auto" on a GPU) does with this trainer: a step that runs out of memory
    (simulated: the model raises CUDA's OOM above 2 rows) is retried with fewer rows, and training completes."""
    tok = build_tiny_tokenizer()
    model = tiny_model(tok)
    cfg = TrainConfig(output_dir=str(tmp_path), batch_size=8, max_steps=2, save_strategy="no")
    trainer = build_trainer(cfg, examples(16), model, tok)
    trainer.args.auto_find_batch_size = True  # finds_batch_on_oom's answer on a GPU
    rows = []

    def out_of_memory_above_two_rows(module, args):
        rows.append(args[0].shape[0])
        if rows[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    # on the embedding: some PEFT versions call the wrapped model's forward() directly, past its hooks
    model.get_input_embeddings().register_forward_pre_hook(out_of_memory_above_two_rows)
    trainer.train()
    assert rows[0] == 8 and rows[-2:] == [2, 2]  # shrunk, then two steps of 2 rows
    assert trainer.state.train_batch_size == 2 and trainer.state.global_step == 2
