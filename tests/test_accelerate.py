"""``accelerate launch`` with 2 CPU processes (gloo): the unchanged train_student entry point, data split.

A tiny Llama saved to a folder, 16 examples, batch 2 per process, 2 epochs: 16 / (2 x 2) = 4 steps an
epoch, so 8 steps in all (one process would take 16). LoRA, so the adapter save and the merge run on
the main process only; dev examples (an odd number, so the ranks score unequal slices) check that dev
accuracy is gathered across processes. About 10-15 s on 2 CPU cores (two fresh processes import
torch, transformers and TRL), so it runs with the fast tests.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import yaml

from cotbridge.jsonl import write_jsonl
from cotbridge.train.launch_entry import STATS_FILE, launch_command
from tests.conftest import build_tiny_tokenizer
from tests.test_train import examples, tiny_model
from tests.test_train_seq2seq import dev_examples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_split_the_data_and_only_the_main_one_writes(tmp_path):
    from safetensors.torch import load_file

    tok = build_tiny_tokenizer()
    model_dir, out = tmp_path / "tiny", tmp_path / "out"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_jsonl(tmp_path / "train.jsonl", examples(16))
    write_jsonl(tmp_path / "dev.jsonl", [e.to_dict() for e in dev_examples(3)])
    (tmp_path / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                "model": str(model_dir),
                "lora": True,
                "lr": 1e-2,
                "epochs": 2,
                "batch_size": 2,
                "logging_steps": 1,
                "group_by_length": False,
                "dev_max_tokens": 4,
            }
        )
    )
    cmd, env = launch_command(
        [
            "--data",
            str(tmp_path / "train.jsonl"),
            "--config",
            str(tmp_path / "cfg.yaml"),
            "--output",
            str(out),
            "--dev",
            str(tmp_path / "dev.jsonl"),
            "--task",
            "multiarith",
        ],
        num_processes=2,
        cpu=True,
        port=free_port(),
        threads_per_process=1,
    )
    assert cmd[0].endswith("accelerate") and env["CUDA_VISIBLE_DEVICES"] == ""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]

    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["world_size"] == 2 and stats["global_step"] == 8 and stats["examples"] == 16, stats
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["max_steps"] == 8
    # Dev accuracy over all 3 examples (2 scored on rank 0, 1 on rank 1), once per epoch.
    assert [(d["step"], d["dev_accuracy"] <= 1.0) for d in stats["dev"]] == [(4, True), (8, True)]
    assert all(h["dev_n"] == 3 for h in state["log_history"] if "dev_accuracy" in h)
    # The main process wrote the adapter and the merged student; the merged weights hold no LoRA tensors.
    merged = load_file(out / "model.safetensors")
    assert (out / "adapter" / "adapter_model.safetensors").exists() and not any("lora_" in k for k in merged)
    assert (out / "tokenizer.json").exists()
    print(f"accelerate launch, 2 CPU processes: {elapsed:.1f} s")


def test_on_policy_distillation_runs_in_two_cpu_processes(tmp_path):
    """The same launcher with --trainer on_policy: each process samples its share of the prompts and a frozen
    teacher in each process grades them; 8 prompts, batch 2 a process: 2 steps, both processes counted."""
    from safetensors.torch import load_file

    from cotbridge.models.truncated import truncated_copy

    tok = build_tiny_tokenizer()
    teacher, out = tmp_path / "teacher", tmp_path / "out"
    tiny_model(tok).save_pretrained(teacher)
    tok.save_pretrained(teacher)
    student = truncated_copy(str(teacher), tmp_path / "student", layers=1)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Q: Tom has {i} apples. ###"} for i in range(8)])
    settings = {"model": str(student), "teacher": str(teacher), "teacher_dtype": "float32", "lora": False}
    settings |= {"lr": 1e-2, "batch_size": 2, "max_new_tokens": 4, "logging_steps": 1, "mixed_precision": "no"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(settings))
    args = ["--data", str(tmp_path / "prompts.jsonl"), "--config", str(tmp_path / "cfg.yaml"), "--output", str(out)]
    cmd, env = launch_command(
        [*args, "--trainer", "on_policy"], num_processes=2, cpu=True, port=free_port(), threads_per_process=1
    )
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["world_size"] == 2 and stats["global_step"] == 2 and stats["examples"] == 8, stats
    before, after = load_file(student / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)  # the distilled student moved


def test_the_fsdp_config_beside_the_recipes_launches_and_says_plainly_that_cpus_are_not_sharded(tmp_path):
    """recipes/accelerate/fsdp.yaml as written, with only the process count, precision and device overridden for 2 CPU
    processes. accelerate shards (FSDP, DeepSpeed) only over GPUs: on CPUs its processes replicate the model. So: the
    file launches, both processes train their share, the main process writes one ordinary checkpoint whose weights
    moved, the stats say "sharding: none", and one warning says why, instead of a silent fallback."""
    from safetensors.torch import load_file

    from tests.conftest import REPO

    tok = build_tiny_tokenizer()
    model_dir, out = tmp_path / "tiny", tmp_path / "out"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_jsonl(tmp_path / "train.jsonl", examples(8))
    settings = {"model": str(model_dir), "lora": False, "lr": 1e-2, "epochs": 1, "batch_size": 2}
    settings |= {"logging_steps": 1, "group_by_length": False, "mixed_precision": "no"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(settings))
    args = ["--data", str(tmp_path / "train.jsonl"), "--config", str(tmp_path / "cfg.yaml"), "--output", str(out)]
    cmd, env = launch_command(
        args,
        num_processes=2,
        cpu=True,
        port=free_port(),
        threads_per_process=1,
        config_file=REPO / "recipes" / "accelerate" / "fsdp.yaml",
    )
    assert "--multi_gpu" not in cmd and "--cpu" not in cmd  # the file's distributed type decides
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["world_size"] == 2 and stats["global_step"] == 2 and stats["examples"] == 8, stats
    assert stats["sharding"] == "none"
    warned = [line for line in proc.stderr.splitlines() if "accelerate runs only on GPUs" in line]
    assert len(warned) == 1 and "asks for FSDP" in warned[0] and "2 CPU processes" in warned[0], proc.stderr[-2000:]
    before, after = load_file(model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    assert any(not before[k].equal(after[k]) for k in before)
