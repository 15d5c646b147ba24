"""batch_size "auto": 8 rows on a CPU; on a GPU the largest power of two (up to 64) its free memory holds, with
transformers retrying an out-of-memory step with fewer rows."""

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
    assert fitting_rows(per_row=GB, free_bytes=GB // 2) == 1  # never 0: the OOM retry then says what fits
    assert fitting_rows(per_row=1, free_bytes=GB, cap=48) == 32


def test_row_bytes_grows_with_tokens_layers_and_precision():
    bf16 = row_bytes(SMOLLM2, 512, value_bytes=2)
    assert row_bytes(SMOLLM2, 1024, value_bytes=2) == 2 * bf16
    assert row_bytes(SMOLLM2, 512, value_bytes=4) > bf16
    deeper = SimpleNamespace(**{**vars(SMOLLM2), "num_hidden_layers": 60})
    assert row_bytes(deeper, 512, 2) > bf16
    # 512 tokens of SmolLM2-135M: ~0.3 GB of activations and ~0.2 GB of logits
    assert 0.3 * GB < bf16 < 0.7 * GB
    # activation checkpointing keeps a layer's input, not its 17 values a hidden unit: only the logits stay large
    assert row_bytes(SMOLLM2, 512, 2, checkpointing=True) < 0.5 * bf16
    # an encoder-decoder row: encoder and decoder layers, max_length tokens on each side
    t5 = SimpleNamespace(**{**vars(SMOLLM2), "is_encoder_decoder": True, "num_decoder_layers": 30})
    assert row_bytes(t5, 512, 2) > 2 * 0.3 * GB + bf16


def test_numbers_pass_through_and_auto_is_eight_rows_on_a_cpu():
    model = tiny_model(build_tiny_tokenizer())
    assert train_batch_size(TrainConfig(batch_size=4), model, mixed_bf16=False) == 4
    assert train_batch_size(TrainConfig(), model, mixed_bf16=False) == CPU_ROWS
    assert not batch_fit.retries_on_oom(TrainConfig(), model)


class _FakeGpuModel:
    """What train_batch_size reads of a model on a GPU: its parameters' device, size and dtype, and its config."""

    def __init__(self, params: int):
        self.config = SMOLLM2
        self.param = SimpleNamespace(
            device=torch.device("cuda", 0), dtype=torch.float32, numel=lambda: params, element_size=lambda: 4
        )

    def parameters(self):
        return iter([self.param])


@pytest.fixture
def gpu_memory(monkeypatch):
    """A fake CUDA device: set ``free`` / ``cached`` (reserved by PyTorch, not allocated) / ``total`` in GB."""
    memory = {"free": 0.0, "cached": 0.0, "total": 141.0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(memory["free"] * GB), 141 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: int((memory["cached"] + 1) * GB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * GB)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(total_memory=int(memory["total"] * GB)),
    )
    return memory


@pytest.mark.parametrize(
    ("free_gb", "lora", "rows"),
    [
        (130, True, 64),  # an H200: the cap
        (8, True, 8),  # 0.7 x 8 GB over ~0.5 GB rows of 512 bf16 tokens: 11 -> 8
        (8, False, 4),  # full fine-tuning: 135M x 16 bytes of optimizer state first (2.2 GB)
        (0.2, True, 1),
    ],
)
def test_auto_on_a_gpu_sizes_the_batch_from_free_memory(gpu_memory, free_gb, lora, rows):
    gpu_memory["free"] = free_gb
    model = _FakeGpuModel(params=135_000_000)
    assert train_batch_size(TrainConfig(lora=lora), model, mixed_bf16=True) == rows
    assert batch_fit.retries_on_oom(TrainConfig(), model)
    assert not batch_fit.retries_on_oom(TrainConfig(batch_size=16), model)  # a number the user chose fails loudly


def test_memory_pytorch_keeps_cached_counts_as_free(gpu_memory):
    """A second student trained in the same process finds the first one's memory in PyTorch's cache, not free."""
    model = _FakeGpuModel(params=135_000_000)
    gpu_memory["free"] = 2
    assert train_batch_size(TrainConfig(), model, mixed_bf16=True) == 2
    gpu_memory["cached"] = 6
    assert train_batch_size(TrainConfig(), model, mixed_bf16=True) == 8  # as with 8 GB free


def test_several_processes_take_one_estimate_from_the_whole_device_and_never_retry(gpu_memory, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    model = _FakeGpuModel(params=135_000_000)
    gpu_memory["free"], gpu_memory["total"] = 0.2, 8.5  # GPU 0 crowded by both processes' models: not what counts
    assert train_batch_size(TrainConfig(), model, mixed_bf16=True) == 8  # (8.5 - 0.54) x 0.7 / 0.5 GB: 11 -> 8
    assert not batch_fit.retries_on_oom(TrainConfig(), model)  # a retry in one process alone would hang the others


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
    write_json(tmp_path / "checkpoint-4" / "trainer_state.json", {"global_step": 4})  # a finished save
    with pytest.raises(
        UserError,
        match=r"config.batch_size: 8 -> 'auto'.*keep the recorded values of changed defaults: --set batch_size=8$",
    ):
        with training_folder(TrainConfig(output_dir=str(tmp_path)), rows):
            pass
    with training_folder(TrainConfig(output_dir=str(tmp_path), batch_size=8), rows):
        pass


def test_a_step_out_of_memory_shrinks_the_batch_and_training_goes_on(tmp_path):
    """What auto_find_batch_size (on for "auto" on one GPU) does with this trainer: a step that runs out of memory
    (simulated: the model raises CUDA's OOM above 2 rows) is retried with fewer rows, and training completes."""
    tok = build_tiny_tokenizer()
    model = tiny_model(tok)
    cfg = TrainConfig(output_dir=str(tmp_path), batch_size=8, max_steps=2, save_strategy="no")
    trainer = build_trainer(cfg, examples(16), model, tok)
    trainer.args.auto_find_batch_size = True  # retries_on_oom's answer on a GPU
    rows = []

    def out_of_memory_above_two_rows(module, args):
        rows.append(args[0].shape[0])
        if rows[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    # on the embedding: some PEFT versions call the wrapped model's forward() directly, past its hooks
    model.get_input_embeddings().register_forward_pre_hook(out_of_memory_above_two_rows)
    trainer.train()
    # 8 rows, then fewer at each retry (accelerate: 10% less a try; 1.4: half), then two steps of 2 rows
    assert rows[0] == 8 and rows[-2:] == [2, 2] and rows[:-1] == sorted(set(rows[:-1]), reverse=True)
    assert trainer.state.train_batch_size == 2 and trainer.state.global_step == 2
