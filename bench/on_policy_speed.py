"""On-policy distillation's loop against its parts, side by side in one run (issue #27.5).

Teacher: SmolLM2-135M-Instruct (the offline GGUF, dequantized). Student: its first 10 layers (models/truncated.py).
Prompts: coin-flip questions in the finetune_cot format. Two loops of a few steps each:

  in-process  TRL's GKDTrainer (train/on_policy.py), the teacher a frozen copy in this process;
  served      TRL's ServerDistillationTrainer (train/served_teacher.py), the teacher behind cotbridge serve (a
              thread of this process), graded with prompt_logprobs over HTTP.

Inside each loop the student's sampling and the teacher's grading are timed and their tokens counted. After it, the
same work is done plainly, on the same inputs: the student's generate() on each captured sampling batch, and the
teacher's forward pass on each captured batch (in-process) or on each graded sequence (served). The ratios say
whether the loop is slower than its parts. Also: peak memory, and how far the served teacher's log-probs are from
the in-process teacher's (the pre-flight's tolerance). Results: bench/results/on_policy_speed.{json,md}.

    .venv/bin/python bench/on_policy_speed.py            # ~10 min on 2 cores
    .venv/bin/python bench/on_policy_speed.py --smoke    # 1 step a loop, results not written
    python3 bench/on_policy_speed.py --out bench/results/gpu_on_policy_speed   # on a GPU (bench/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paths import ROOT

sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

FULL = dict(steps=4, batch_size=8, max_new_tokens=64, layers=10)
SMOKE = {**FULL, "steps": 1, "batch_size": 2, "max_new_tokens": 8}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts(n: int) -> list[dict[str, str]]:
    """``n`` training questions of the coin-flip task as finetune_cot prompts (what the student is asked)."""
    from cotbridge.models.student_io import STUDENT_SUFFIX
    from cotbridge.tasks import parse_task_spec

    task, params = parse_task_spec("synthetic_coin_flip:k=4")
    return [{"prompt": f"{ex.question}{STUDENT_SUFFIX}"} for ex in task.load("train", **params)[:n]]


def timed(fn: Any, box: dict[str, float], key: str) -> Any:
    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            box[key] += time.perf_counter() - t

    return wrapper


def in_process_loop(student: Path, teacher: str, examples: list[dict], s: dict, out: Path) -> dict[str, Any]:
    import torch
    from trl.experimental.gkd import GKDTrainer

    from cotbridge.train import on_policy as op

    cfg = op.OnPolicyConfig(model=str(student), teacher=teacher, lora=False, lr=5e-5, max_steps=s["steps"],
                            batch_size=s["batch_size"], max_new_tokens=s["max_new_tokens"], temperature=1.0,
                            save_strategy="no", output_dir=str(out), mixed_precision="no")  # fmt: skip
    trainer = op.build_on_policy_trainer(cfg, examples)
    loaded_mb = peak_rss_mb()
    box = {"sampling_s": 0.0, "grading_s": 0.0}
    samples: list[tuple[Any, Any]] = []  # (inputs given to the sampler, its output ids)
    graded: list[dict[str, Any]] = []  # the teacher's forward inputs
    sample = GKDTrainer.generate_on_policy_outputs

    def sampling(model: Any, inputs: Any, generation_config: Any, *rest: Any) -> Any:  # TRL < 1 adds the pad id
        t = time.perf_counter()
        result = sample(model, inputs, generation_config, *rest)
        box["sampling_s"] += time.perf_counter() - t
        samples.append(({k: v.clone() for k, v in inputs.items() if torch.is_tensor(v)}, generation_config))
        samples[-1] = (*samples[-1], int((result[0].shape[1] - inputs["prompts"].shape[1]) * result[0].shape[0]))
        return result

    def pre(_m: Any, _a: Any, kwargs: Any) -> None:
        graded.append({k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)})
        box["t0"] = time.perf_counter()

    def post(_m: Any, _a: Any, _k: Any, _out: Any) -> None:
        box["grading_s"] += time.perf_counter() - box["t0"]

    GKDTrainer.generate_on_policy_outputs = staticmethod(sampling)
    hooks = [
        trainer.teacher_model.register_forward_pre_hook(pre, with_kwargs=True),
        trainer.teacher_model.register_forward_hook(post, with_kwargs=True),
    ]
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        GKDTrainer.generate_on_policy_outputs = staticmethod(sample)
        for h in hooks:
            h.remove()
    loop_s = time.perf_counter() - start
    loop_mb = peak_rss_mb()
    sampled_tokens = sum(n for *_, n in samples)
    graded_tokens = sum(int(g["attention_mask"].sum()) for g in graded)

    # The same work, plainly: generate() on each sampling batch, a forward pass on each grading batch
    print(f"in-process loop: {loop_s:.1f} s; timing its parts plainly", flush=True)
    model, teacher_model = trainer.model, trainer.teacher_model
    model.eval()
    t = time.perf_counter()
    plain_sampled = 0
    with torch.no_grad():
        for inputs, generation_config, _ in samples:
            ids = model.generate(input_ids=inputs["prompts"], attention_mask=inputs["prompt_attention_mask"],
                                 generation_config=generation_config)  # fmt: skip
            plain_sampled += (ids.shape[1] - inputs["prompts"].shape[1]) * ids.shape[0]
    plain_sampling_s = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        for g in graded:
            teacher_model(**g)
    plain_grading_s = time.perf_counter() - t
    return {
        "steps": trainer.state.global_step,
        "loop_s": round(loop_s, 2),
        "sampling_s": round(box["sampling_s"], 2),
        "grading_s": round(box["grading_s"], 2),
        "sampled_tokens": sampled_tokens,
        "graded_tokens": graded_tokens,
        "sampling_tok_s": round(sampled_tokens / box["sampling_s"], 1),
        "grading_tok_s": round(graded_tokens / box["grading_s"], 1),
        "plain_sampling_tok_s": round(plain_sampled / plain_sampling_s, 1),
        "plain_forward_tok_s": round(graded_tokens / plain_grading_s, 1),
        "peak_rss_loaded_mb": round(loaded_mb),
        "peak_rss_loop_mb": round(loop_mb),
    }


def served_loop(student: Path, teacher: str, examples: list[dict], s: dict, out: Path) -> dict[str, Any]:
    import torch

    from cotbridge.backends.hf import HFBackend
    from cotbridge.server import running_server
    from cotbridge.train import on_policy as op

    backend = HFBackend(teacher, batch_size=s["batch_size"])
    with running_server(backend, model_name="teacher") as url:
        cfg = op.OnPolicyConfig(model=str(student), teacher=teacher, teacher_url=url, lora=False, lr=5e-5,
                                max_steps=s["steps"], batch_size=s["batch_size"], max_new_tokens=s["max_new_tokens"],
                                temperature=1.0, save_strategy="no", output_dir=str(out),
                                mixed_precision="no")  # fmt: skip
        print("served loop: pre-flight", flush=True)
        loose = {"served_tolerance": 1e9}
        agreement = op.check_pair(cfg.model_copy(update=loose), top_k=5)[-1]["detail"]
        fp32 = op.check_pair(cfg.model_copy(update={**loose, "teacher_dtype": "float32"}), top_k=5)[-1]["detail"]
        trainer = op.build_on_policy_trainer(cfg, examples)
        box = {"grading_s": 0.0, "sampling_s": 0.0}
        seqs: list[list[int]] = []
        client = trainer.teacher_client
        grade = client.get_sequence_logprobs

        def grading(sequences: list[list[int]], prompt_lengths: list[int], **k: Any) -> Any:
            seqs.extend(list(x) for x in sequences)
            return timed(grade, box, "grading_s")(sequences, prompt_lengths, **k)

        client.get_sequence_logprobs = grading
        trainer._generate_single_turn = timed(trainer._generate_single_turn, box, "sampling_s")
        print("served loop: training", flush=True)
        start = time.perf_counter()
        trainer.train()
        loop_s = time.perf_counter() - start
    print(f"served loop: {loop_s:.1f} s; timing the forward passes plainly", flush=True)
    graded_tokens = sum(len(x) for x in seqs)
    t = time.perf_counter()
    with torch.no_grad():  # the served model's own forward pass on each graded sequence, in this process
        for x in seqs:
            backend.model(input_ids=torch.tensor([x]))
    plain_s = time.perf_counter() - t
    return {
        "steps": trainer.state.global_step,
        "loop_s": round(loop_s, 2),
        "sampling_s": round(box["sampling_s"], 2),
        "grading_s": round(box["grading_s"], 2),
        "graded_tokens": graded_tokens,
        "grading_tok_s": round(graded_tokens / box["grading_s"], 1),
        "plain_forward_tok_s": round(graded_tokens / plain_s, 1),
        "served_dtype": str(backend.model.dtype).removeprefix("torch."),
        "preflight_agreement": agreement,
        "preflight_agreement_fp32_in_process": fp32,
    }


def render(r: dict[str, Any]) -> str:
    a, b = r["in_process"], r["served"]
    rows = [
        "| loop | part | in the loop (tok/s) | plainly, same inputs (tok/s) | loop / plain |",
        "|---|---|---:|---:|---:|",
        f"| in-process (GKD) | student sampling | {a['sampling_tok_s']} | {a['plain_sampling_tok_s']} | "
        f"{a['sampling_tok_s'] / a['plain_sampling_tok_s']:.2f} |",
        f"| in-process (GKD) | teacher grading | {a['grading_tok_s']} | {a['plain_forward_tok_s']} | "
        f"{a['grading_tok_s'] / a['plain_forward_tok_s']:.2f} |",
        f"| served (cotbridge serve) | teacher grading over HTTP | {b['grading_tok_s']} | "
        f"{b['plain_forward_tok_s']} | "
        f"{b['grading_tok_s'] / b['plain_forward_tok_s']:.2f} |",
    ]
    return "\n".join(
        [
            "# On-policy distillation: the loop against its parts (bench/on_policy_speed.py)",
            "",
            f"CPU: {r['cpu']}. Student: SmolLM2-135M's first {r['settings']['layers']} layers; teacher: SmolLM2-135M.",
            f"Settings: {r['settings']}. Busy: {r['busy']}.",
            "",
            *rows,
            "",
            f"In-process loop: {a['steps']} steps in {a['loop_s']} s; sampling {a['sampling_s']} s "
            f"({a['sampled_tokens']} tokens), teacher grading {a['grading_s']} s ({a['graded_tokens']} tokens). "
            f"Peak RSS {a['peak_rss_loaded_mb']} MB with both models loaded, "
            f"{a['peak_rss_loop_mb']} MB after the loop.",
            f"Served loop: {b['steps']} steps in {b['loop_s']} s; sampling {b['sampling_s']} s, grading over HTTP "
            f"{b['grading_s']} s ({b['graded_tokens']} tokens; the teacher served in {b['served_dtype']}).",
            f"Pre-flight, served against the in-process teacher in the same dtype: {b['preflight_agreement']}; "
            f"against an fp32 in-process teacher: {b['preflight_agreement_fp32_in_process']}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "on_policy_speed"), help="results path stem")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    from _results import write_results
    from cotbridge.models.truncated import truncated_copy
    from on_policy_vs_sft import cpu_model

    teacher = "smollm2-135m-instruct"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        student = truncated_copy(teacher, work / "student", layers=s["layers"])
        examples = prompts(s["steps"] * s["batch_size"])
        result = {
            "cpu": cpu_model(),
            "busy": os.environ.get("BENCH_BUSY", "no other job ran (checked with top before the run)"),
            "settings": s,
            "in_process": in_process_loop(student, teacher, examples, s, work / "gkd"),
            "served": served_loop(student, teacher, examples, s, work / "served"),
        }
    if args.smoke:
        print(render(result))
    else:
        write_results(args.out, result, render)


if __name__ == "__main__":
    main()
