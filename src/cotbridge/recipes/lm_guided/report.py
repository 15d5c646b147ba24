"""The LM-guided CoT report in the paper's layout: EM/F1 per dataset for each row, mean aspect scores per row,
the RL reward curve, and the paper's EM numbers beside ours with the model sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.fileio import write_text
from cotbridge.jsonl import read_json_if_any, write_json
from cotbridge.train.rl import window_means

# Lee et al. 2024 (PAPERS.md §3), EM on HotpotQA / 2WikiMultiHopQA; RL: "a slight further gain", no number recorded.
PAPER_EM = {
    "standard": {"hotpotqa": 0.500, "2wikimultihopqa": 0.500},
    "cot": {"hotpotqa": 0.483, "2wikimultihopqa": 0.400},
    "kd": {"hotpotqa": 0.507, "2wikimultihopqa": 0.506},
    "kd_sc": {"hotpotqa": 0.513, "2wikimultihopqa": 0.524},
}
PAPER_MODELS = "small LM < 1B parameters writes rationales; frozen large LM > 10B parameters answers"
ROW_TITLES = {
    "standard": "standard prompting",
    "cot": "CoT (large model's own)",
    "kd": "LM-guided, KD",
    "kd_sc": "LM-guided, KD + SC",
    "kd_rl": "LM-guided, KD + RL",
    "kd_rl_sc": "LM-guided, KD + RL + SC",
}


def param_count(path: str | Path) -> int | None:
    """Parameters of a saved HF model folder (from its safetensors header; nothing is loaded)."""
    import json
    import struct

    f = Path(path) / "model.safetensors"
    if not f.is_file():  # a writer saved in another format (or not trained): no count
        return None
    with f.open("rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__":
            n = 1
            for d in meta["shape"]:
                n *= d
            total += n
    return total


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def result_table(cfg: Any, results: dict[str, dict[str, Any]]) -> list[str]:
    tasks = [t.split(":")[0] for t in cfg.tasks]
    head = "| row | k | " + " | ".join(f"{t} EM | {t} F1 | n" for t in tasks) + " |"
    lines = [head, "|---" * (2 + 3 * len(tasks)) + "|"]
    for row in cfg.eval.rows:
        cells = []
        for t in tasks:
            m = results.get(row.name, {}).get(t)
            cells += (
                [f"{_fmt(m['em'])} ± {_fmt(m['em_stderr'])}", f"{_fmt(m['f1'])} ± {_fmt(m['f1_stderr'])}", str(m["n"])]
                if m
                else ["–", "–", "0"]
            )
        lines.append(f"| {ROW_TITLES.get(row.name, row.name)} | {row.k} | " + " | ".join(cells) + " |")
    return lines


def pooled_aspects(means: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {"scorer/aspect": {mean, n}}} pooled over tasks (weighted by n)."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for per_row in means.values():
        for row, cells in per_row.items():
            for key, c in cells.items():
                acc = pooled.setdefault(row, {}).setdefault(key, [0.0, 0.0])
                acc[0] += c["mean"] * c["n"]
                acc[1] += c["n"]
    return {
        row: {k: {"mean": s / n, "n": int(n)} for k, (s, n) in cells.items() if n} for row, cells in pooled.items()
    }


def aspect_table(cfg: Any, pooled: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    keys = sorted({k for cells in pooled.values() for k in cells}, key=lambda k: (k.startswith("judge"), k))
    if not keys:
        return ["(no rationales were scored)"]
    lines = ["| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for row in cfg.eval.rows:
        cells = pooled.get(row.name)
        if not cells:
            continue
        lines.append(
            f"| {ROW_TITLES.get(row.name, row.name)} | "
            + " | ".join(f"{cells[k]['mean']:.3f} (n={cells[k]['n']})" if k in cells else "–" for k in keys)
            + " |"
        )
    return lines


def paper_table(cfg: Any, results: dict[str, dict[str, Any]], models: dict[str, Any]) -> list[str]:
    """The paper's EM beside ours, with both setups' model sizes, so what is comparable is visible."""
    tasks = [t.split(":")[0] for t in cfg.tasks]
    ours = (
        f"writer {format_size(models.get('writer_params'))} "
        f"from {'scratch' if models.get('scratch') else models.get('writer_init')}, "
        f"large {models['large']} ({format_size(models.get('large_params'))})"
    )
    lines = [
        f"Paper (Lee et al. 2024): {PAPER_MODELS}. This run: {ours}.",
        "",
        "| row | " + " | ".join(f"{t} EM paper | {t} EM ours (n)" for t in tasks) + " |",
        "|---" * (1 + 2 * len(tasks)) + "|",
    ]
    for row in cfg.eval.rows:
        cells = []
        for t in tasks:
            p = PAPER_EM.get(row.name, {}).get(t)
            m = results.get(row.name, {}).get(t)
            cells += ["–" if p is None else f"{100 * p:.1f}", f"{100 * m['em']:.1f} ({m['n']})" if m else "–"]
        lines.append(f"| {ROW_TITLES.get(row.name, row.name)} | " + " | ".join(cells) + " |")
    return lines


def format_size(n: int | None) -> str:
    from cotbridge.reporting.rows import format_params

    return "?" if not n else format_params(n)


def rl_summary(rl_done: dict[str, Any]) -> dict[str, Any]:
    log = rl_done.get("log", [])
    out: dict[str, Any] = {
        "steps": rl_done.get("steps"),
        "weights": rl_done.get("weights"),
        "changed_tensors": rl_done.get("changed_tensors"),
    }
    for key in ["reward", "kl"] + [f"rewards/{n}/mean" for n in rl_done.get("components", [])]:
        first, last = window_means([r[key] for r in log if key in r])
        out[key] = {"first_20pct": first, "last_20pct": last}
    return out


def plot_reward_curve(
    log: list[dict[str, Any]], components: list[str], weights: dict[str, float], path: str | Path
) -> Path:
    from cotbridge.reporting.plots import figure, save_figure

    fig, (ax,) = figure((7.0, 4.0))
    steps = [r["step"] for r in log]
    total = [r["reward"] for r in log]
    ax.plot(steps, total, color="black", alpha=0.35, lw=1, label="total reward (weighted sum)")
    win = max(1, len(total) // 10)
    smooth = [
        sum(total[max(0, i - win + 1) : i + 1]) / len(total[max(0, i - win + 1) : i + 1]) for i in range(len(total))
    ]
    ax.plot(steps, smooth, color="black", lw=2, label=f"total, moving mean of {win}")
    for name in components:
        vals = [r.get(f"rewards/{name}/mean") for r in log]
        ax.plot(steps, vals, lw=1, label=f"{name} (weight {weights.get(name, 1):g})")
    n = max(1, round(len(total) * 0.2))
    if total:
        ax.axvspan(steps[0], steps[n - 1], color="tab:red", alpha=0.08, label="first / last 20% of steps")
        ax.axvspan(steps[-n], steps[-1], color="tab:green", alpha=0.08)
    ax.set_xlabel("RL step")
    ax.set_ylabel("reward (per-step mean)")
    ax.set_title("RL refinement of the rationale writer")
    ax.legend(fontsize="small", frameon=False)
    return save_figure(fig, path, 150)


def write_lmguided_report(
    cfg: Any, run_dir: str | Path, results: dict[str, dict[str, Any]], means: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    d = Path(run_dir)
    rl_done = read_json_if_any(d / "writer" / "rl" / "done.json", {})
    kd_done = read_json_if_any(d / "writer" / "kd" / "done.json", {})
    curation = read_json_if_any(d / "data" / "curation.json", {})
    summaries = {
        t.split(":")[0]: read_json_if_any(d / "teacher" / f"{t.split(':')[0]}.summary.json") for t in cfg.tasks
    }
    teach = {task: summary for task, summary in summaries.items() if summary is not None}
    pooled = pooled_aspects(means)
    rl = rl_summary(rl_done) if rl_done else {}
    large_info = read_json_if_any(d / "eval" / "large_model.json", {})
    models = {
        "large": cfg.large.model,
        "large_backend": cfg.large.backend,
        "large_params": large_info.get("params"),
        "served": cfg.large.serve and cfg.large.backend == "hf",
        "writer_init": kd_done.get("init"),
        "scratch": cfg.writer.model is None,
        "writer_params": param_count(d / "writer" / "kd"),
    }
    timings = read_json_if_any(d / "timings.json", {})
    if rl_done.get("log"):
        plot_reward_curve(rl_done["log"], rl_done["components"], rl_done["weights"], d / "reward_curve.png")
    summary = {
        "name": cfg.name,
        "models": models,
        "context": cfg.context.model_dump(),
        "results": results,
        "aspects": {"per_task": means, "pooled": pooled},
        "rl": rl,
        "kd": {
            "curation": curation,
            "teacher": {t: {k: s[k] for k in ("questions", "records", "accuracy")} for t, s in teach.items()},
            "train_loss_last": (kd_done.get("losses") or [None])[-1],
            "examples": kd_done.get("examples"),
        },
        "paper_em": PAPER_EM,
        "paper_models": PAPER_MODELS,
        "timings": timings,
    }
    write_json(d / "results.json", summary)
    lines = [
        f"# LM-guided CoT: {cfg.name}",
        "",
        f"Large model `{cfg.large.model}` ({format_size(models['large_params'])}, "
        f"{cfg.large.backend}{', through cotbridge serve' if models['served'] else ''}); rationale writer "
        f"{'trained from scratch' if models['scratch'] else '`' + str(models['writer_init']) + '`'} "
        f"({format_size(models['writer_params'])} parameters). "
        "EM and F1 in %, ± standard error; n = questions per cell.",
        "",
        "## EM / F1 per dataset",
        "",
        *result_table(cfg, results),
        "",
        "## Mean rationale-quality scores per row (pooled over datasets, scores in [0, 1])",
        "",
        *aspect_table(cfg, pooled),
        "",
        "## The paper's EM beside ours",
        "",
        *paper_table(cfg, results, models),
    ]
    if rl:
        lines += [
            "",
            "## RL reward",
            "",
            f"Mean total reward over the first 20% of {rl['steps']} steps: "
            f"{rl['reward']['first_20pct']:.4f}; over the last 20%: {rl['reward']['last_20pct']:.4f}.",
            "",
            "![reward curve](reward_curve.png)",
        ]
    write_text(d / "report.md", "\n".join(lines) + "\n")
    return summary
