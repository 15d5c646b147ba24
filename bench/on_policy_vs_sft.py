"""On-policy distillation against Fine-tune-CoT SFT, offline, on the quickstart's coin-flip task (issue #27.4).

Teacher: SmolLM2-135M-Instruct fine-tuned with Fine-tune-CoT (LoRA) on the reference teacher's diverse rationales (D=3,
the quickstart's best student). Student: the first 10 of SmolLM2's 30 layers (models/truncated.py: the same
tokenizer, pretrained weights). Three arms from that same start, each with the same seeds:

  (a) sft        Fine-tune-CoT SFT (full fine-tuning) on one reference rationale per training question;
  (b) on_policy  on-policy distillation (TRL's GKD, lmbda 1, reverse KL) toward the teacher, from the raw start;
  (c) sft+op     (a)'s student, then the same on-policy distillation.

Every student is evaluated greedily on the same test questions in the finetune_cot mode. Reported per arm and seed:
accuracy with its standard error, wall time of the training, and teacher tokens (SFT: the rationale tokens a model
teacher would have written; on-policy: the tokens the teacher scored, prompt and sampled completion), plus the
share of on-policy wall time spent sampling. Small by design (a few dozen steps on a shared 2-core CPU): the
figures are what this run measured, whatever they show. Results: bench/results/on_policy_vs_sft.{json,md,png}.

    .venv/bin/python bench/on_policy_vs_sft.py             # ~40 min on 2 busy cores; resumes where it stopped
    .venv/bin/python bench/on_policy_vs_sft.py --smoke     # tiny sizes, a few minutes, results not written
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from _paths import ROOT

sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results" / "on_policy_vs_sft"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FULL = dict(
    task="synthetic_coin_flip:k=4",
    train_limit=200,
    eval_limit=100,
    layers=10,
    seeds=[0, 1],
    sft_epochs=2,
    sft_lr=3e-4,
    op_steps=25,  # one pass over the 200 training prompts
    op_lr=5e-5,
    op_max_new_tokens=80,  # the reference rationales for 4 people are 66-71 tokens
    batch_size=8,
)
SMOKE = {**FULL, "train_limit": 16, "eval_limit": 8, "seeds": [0], "sft_epochs": 1, "op_steps": 2}


def rationale_data(run: Path, s: dict[str, Any], samples: int, split: str = "train") -> Path:
    """Reference rationales for the training (or test) questions, curated into Fine-tune-CoT examples."""
    from cotbridge.curate import CurateSettings, curate_file
    from cotbridge.engine import unit
    from cotbridge.teach import TeachConfig, TeacherConfig, run_teach

    tag = f"D{samples}" if split == "train" else f"{split}_D{samples}"
    out = run / f"data_{tag}"

    def make() -> Path:
        limit = s["train_limit"] if split == "train" else s["eval_limit"]
        cfg = TeachConfig(task=s["task"], split=split, limit=limit, teacher=TeacherConfig(backend="reference"),
                          samples=samples, run_dir=str(run), tag=tag, cache="off")  # fmt: skip
        run_teach(cfg, progress=False)
        curate_file(run / "teacher" / f"synthetic_coin_flip.{tag}.jsonl", out, "finetune_cot", "yes_no",
                    CurateSettings())  # fmt: skip
        return out / "train.jsonl"

    return unit(out / "train.jsonl", make, read=lambda p: p)


def evaluate(model: Path, s: dict[str, Any]) -> dict[str, Any]:
    from cotbridge.engine import unit
    from cotbridge.evaluation.run import EvalConfig, run_eval

    out = model.parent / f"{model.name}.eval"
    cfg = EvalConfig(model=str(model), tasks=[s["task"]], limit=s["eval_limit"], mode="finetune_cot", batch_size=50,
                     max_tokens=128, output=str(out))  # fmt: skip
    res = unit(out / "results.json", lambda: run_eval(cfg, progress=False))
    return next(iter(res["results"].values()))


def timed_unit(marker: Path, make) -> dict[str, Any]:
    from cotbridge.engine import unit

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        stats = make()
        return {**stats, "wall_s": round(time.perf_counter() - start, 1)}

    return unit(marker, run)


def train_teacher(run: Path, s: dict[str, Any]) -> Path:
    from cotbridge.jsonl import read_jsonl
    from cotbridge.train.config import TrainConfig
    from cotbridge.train.sft import train_student

    out = run / "teacher_model"
    cfg = TrainConfig(model="smollm2-135m-instruct", lora=True, lora_r=16, lora_alpha=32, lr=1e-3, epochs=1,
                      batch_size=8, save_strategy="no", group_by_length=False, output_dir=str(out))  # fmt: skip
    timed_unit(out / "done.json", lambda: train_student(cfg, list(read_jsonl(rationale_data(run, s, 3)))))
    return out


def sft(run: Path, start: Path, s: dict[str, Any], seed: int) -> tuple[Path, dict[str, Any]]:
    from cotbridge.jsonl import read_jsonl
    from cotbridge.train.config import TrainConfig
    from cotbridge.train.sft import train_student

    out = run / f"sft_seed{seed}"
    cfg = TrainConfig(model=str(start), lora=False, lr=s["sft_lr"], epochs=s["sft_epochs"], batch_size=s["batch_size"],
                      save_strategy="no", group_by_length=False, seed=seed, output_dir=str(out))  # fmt: skip
    data = list(read_jsonl(rationale_data(run, s, 1)))
    stats = timed_unit(out / "done.json", lambda: train_student(cfg, data))
    stats["teacher_tokens"] = rationale_tokens(start, data)
    return out, stats


def rationale_tokens(tokenizer_dir: Path, data: list[dict[str, Any]]) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return sum(len(tok(e["completion"])["input_ids"]) for e in data)


def on_policy(run: Path, name: str, start: Path, teacher: Path, s: dict[str, Any], seed: int):
    """On-policy distillation with the teacher's scored tokens and the sampling time counted as it runs."""
    from trl.experimental.gkd import GKDTrainer

    from cotbridge.jsonl import read_jsonl
    from cotbridge.train import on_policy as op

    out = run / f"{name}_seed{seed}"
    cfg = op.OnPolicyConfig(model=str(start), teacher=str(teacher), lora=False, lr=s["op_lr"],
                            max_steps=s["op_steps"], batch_size=s["batch_size"],
                            max_new_tokens=s["op_max_new_tokens"], temperature=1.0, lmbda=1.0, beta=1.0,
                            save_strategy="no", seed=seed, output_dir=str(out))  # fmt: skip
    prompts = [{"prompt": e["prompt"]} for e in read_jsonl(rationale_data(run, s, 1))]
    counts = {"teacher_tokens": 0, "sampling_s": 0.0}

    def make() -> dict[str, Any]:
        build, sample = op.build_on_policy_trainer, GKDTrainer.generate_on_policy_outputs

        def counting_build(*a: Any, **k: Any) -> Any:
            trainer = build(*a, **k)

            def count(_module: Any, _args: Any, kwargs: Any) -> None:
                counts["teacher_tokens"] += int(kwargs["attention_mask"].sum())

            trainer.teacher_model.register_forward_pre_hook(count, with_kwargs=True)
            return trainer

        def timed_sample(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            result = sample(*a, **k)
            counts["sampling_s"] += time.perf_counter() - t
            return result

        op.build_on_policy_trainer, GKDTrainer.generate_on_policy_outputs = counting_build, staticmethod(timed_sample)
        try:
            stats = op.train_on_policy(cfg, prompts)
        finally:
            op.build_on_policy_trainer, GKDTrainer.generate_on_policy_outputs = build, staticmethod(sample)
        return {**stats, **counts, "sampling_s": round(counts["sampling_s"], 1)}

    return out, timed_unit(out / "done.json", make)


def teacher_agreement(run: Path, teacher: Path, s: dict[str, Any], n: int = 20) -> dict[str, Any]:
    """The teacher's mean log-prob per token (fp32) of texts after the first ``n`` test prompts: the reference
    rationales, and each arm's greedy output (seed 0) from its evaluation. On-policy distillation moves the student
    toward text the teacher finds likely; this shows which text that is."""
    import torch

    from cotbridge.jsonl import read_jsonl
    from cotbridge.train.on_policy import OnPolicyConfig, load_teacher

    model, tok = load_teacher(OnPolicyConfig(teacher=str(teacher), teacher_dtype="float32"))
    reference = [(e["prompt"], e["completion"]) for e in read_jsonl(rationale_data(run, s, 1, "test"))][:n]
    texts = {"reference rationale": reference}
    for arm, folder in (("sft", "sft_seed0"), ("on_policy", "on_policy_seed0"), ("sft+op", "sft_op_seed0")):
        records = list(read_jsonl(run / f"{folder}.eval" / "synthetic_coin_flip.jsonl"))[:n]
        texts[f"{arm} output"] = [(r["prompt"], r["samples"][0]["output"]) for r in records]
    out = {}
    for name, pairs in texts.items():
        total = count = 0.0
        for prompt, text in pairs:
            head = tok(prompt, add_special_tokens=False)["input_ids"]
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if not ids:
                continue
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([head + ids])).logits[0, len(head) - 1 : -1].float()
            total += torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).sum().item()
            count += len(ids)
        out[name] = {"mean_token_logprob": round(total / max(count, 1), 3), "example": pairs[0][1][:100]}
    return out


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# On-policy distillation vs Fine-tune-CoT SFT (offline, coin flip)",
        "",
        f"`.venv/bin/python bench/on_policy_vs_sft.py` on {r['cpu']} (shared with other jobs), {r['date']}; "
        f"torch {r['torch']}, transformers {r['transformers']}, trl {r['trl']}.",
        "",
        f"Task `{s['task']}`: {s['train_limit']} training questions, the first {s['eval_limit']} test questions, "
        "greedy, `finetune_cot` mode. Teacher: SmolLM2-135M-Instruct, LoRA-fine-tuned on the reference teacher's D=3 "
        f"rationales (accuracy {100 * r['teacher']['accuracy']:.1f} ± {100 * r['teacher']['accuracy_stderr']:.1f}). "
        f"Student start: its first {s['layers']} of 30 layers "
        f"(accuracy {100 * r['start']['accuracy']:.1f} ± {100 * r['start']['accuracy_stderr']:.1f}). "
        f"SFT: full fine-tuning, {s['sft_epochs']} epochs of one reference rationale per question, lr {s['sft_lr']}. "
        f"On-policy: TRL's GKD, lmbda 1, beta 1 (reverse KL), temperature 1, {s['op_steps']} steps of "
        f"{s['batch_size']} prompts, {s['op_max_new_tokens']} new tokens, full fine-tuning, lr {s['op_lr']}.",
        "",
        "| arm | seed | accuracy (%) | train wall (s) | of which sampling (s) | teacher tokens | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        sampling = f"{row['sampling_s']:.0f}" if row.get("sampling_s") is not None else "-"
        lines.append(
            f"| {row['arm']} | {row['seed']} | {100 * row['accuracy']:.1f} ± {100 * row['accuracy_stderr']:.1f} | "
            f"{row['wall_s']:.0f} | {sampling} | {row['teacher_tokens']:,} | {row['steps']} |"
        )
    lines += [
        "",
        "Mean over seeds:",
        "",
        "| arm | accuracy (%) | train wall (s) | teacher tokens |",
        "|---|---|---|---|",
    ]
    for arm, m in r["means"].items():
        lines.append(f"| {arm} | {m['accuracy']:.1f} | {m['wall_s']:.0f} | {m['teacher_tokens']:,.0f} |")
    lines += [
        "",
        "Teacher tokens: for SFT, the rationale tokens a model teacher would have written (the reference teacher "
        "wrote them here, at no model cost); for on-policy, the tokens the teacher scored (prompt + the student's "
        "sample). The sft+op row's wall time and tokens include its SFT. The arms are not at equal wall time: an "
        "on-policy step samples before it trains, so its 25 steps cost more than the whole SFT.",
        "",
        "![accuracy against wall time and teacher tokens](on_policy_vs_sft.png)",
        "",
        f"What the teacher finds likely: its mean log-prob per token of texts after the first "
        f"{r['agreement_n']} test prompts (fp32), and the start of the first one.",
        "",
        "| text | teacher log-prob / token | first text |",
        "|---|---|---|",
    ]
    for name, a in r["agreement"].items():
        example = a["example"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {name} | {a['mean_token_logprob']:.3f} | `{example}` |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for arm, marker in (("sft", "o"), ("on_policy", "s"), ("sft+op", "^")):
        rows = [x for x in r["rows"] if x["arm"] == arm]
        for ax, key in zip(axes, ("wall_s", "teacher_tokens")):
            ax.errorbar([x[key] for x in rows], [100 * x["accuracy"] for x in rows],
                        yerr=[100 * x["accuracy_stderr"] for x in rows], fmt=marker, label=arm, capsize=3)  # fmt: skip
    axes[0].set_xlabel("training wall time (s)")
    axes[1].set_xlabel("teacher tokens")
    axes[0].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.axhline(100 * r["teacher"]["accuracy"], ls="--", c="gray", lw=1)
        ax.legend()
    fig.suptitle("coin flip (k=4): 10-layer SmolLM2 student, teacher dashed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    import torch
    import transformers
    import trl

    from _results import cpu_model, write_results
    from cotbridge.engine import unit
    from cotbridge.models.truncated import truncated_copy

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    run = Path(args.run_dir or ROOT / "runs" / ("bench_on_policy_smoke" if args.smoke else "bench_on_policy_vs_sft"))
    run.mkdir(parents=True, exist_ok=True)

    teacher = train_teacher(run, s)
    start = run / "start"
    unit(
        start / "truncated.json", lambda: {"folder": str(truncated_copy("smollm2-135m-instruct", start, s["layers"]))}
    )
    rows = []
    for seed in s["seeds"]:
        sft_model, sft_stats = sft(run, start, s, seed)
        op_model, op_stats = on_policy(run, "on_policy", start, teacher, s, seed)
        both_model, both_stats = on_policy(run, "sft_op", sft_model, teacher, s, seed)
        both_stats = {**both_stats, "wall_s": both_stats["wall_s"] + sft_stats["wall_s"],
                      "teacher_tokens": both_stats["teacher_tokens"] + sft_stats["teacher_tokens"],
                      "global_step": f"{sft_stats['global_step']} + {both_stats['global_step']}"}  # fmt: skip
        for arm, model, stats in (("sft", sft_model, sft_stats), ("on_policy", op_model, op_stats),
                                  ("sft+op", both_model, both_stats)):  # fmt: skip
            rows.append({"arm": arm, "seed": seed, **evaluate(model, s), "wall_s": stats["wall_s"],
                         "sampling_s": stats.get("sampling_s"), "teacher_tokens": stats["teacher_tokens"],
                         "steps": stats["global_step"], "losses": stats.get("losses")})  # fmt: skip
    means = {}
    for arm in ("sft", "on_policy", "sft+op"):
        mine = [x for x in rows if x["arm"] == arm]
        means[arm] = {k: sum(x[k] for x in mine) / len(mine) for k in ("accuracy", "wall_s", "teacher_tokens")}
        means[arm]["accuracy"] *= 100
    result = {
        "settings": s,
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "teacher": evaluate(teacher, s),
        "start": evaluate(start, s),
        "rows": rows,
        "means": means,
        "agreement_n": min(20, s["eval_limit"]),
        "agreement": teacher_agreement(run, teacher, s, min(20, s["eval_limit"])),
    }
    if args.smoke:
        print(render(result))
        return
    plot(result, RESULTS.with_suffix(".png"))
    write_results(RESULTS, result, render)


if __name__ == "__main__":
    main()
