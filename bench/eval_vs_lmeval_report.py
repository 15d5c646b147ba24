"""The result page of bench/eval_vs_lmeval.py: its Markdown from the JSON it writes (also for ``--render-only``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def both_orders(r: dict[str, Any], outp: Path | None) -> str:
    """A section pooling this run with the run in the other order (tool run second tends to be a few % slower)."""
    if outp is None:
        return ""
    other_path = outp.with_name(outp.name + "_cotbridge_first.json")
    if r["settings"]["order"] != "lmeval-first" or not other_path.exists():
        return ""
    o = json.loads(other_path.read_text(encoding="utf-8"))
    if (o["settings"]["limit"], o["settings"]["batch_size"]) != (r["settings"]["limit"], r["settings"]["batch_size"]):
        return ""
    t, u = r["time_s"], o["time_s"]
    lm, cb = t["lmeval_eval"] + u["lmeval_eval"], t["cotbridge_eval"] + u["cotbridge_eval"]
    second_slower = t["ratio_cotbridge_over_lmeval_eval"] > 1 and u["ratio_cotbridge_over_lmeval_eval"] < 1
    order_note = (
        "In both runs the tool that ran second was the slower one, so the order matters as much as the tool; "
        "per-batch times also scatter by several % on this VM with nobody else on the CPUs."
        if second_slower
        else ""
    )
    same = all(
        a["cotbridge_output"] == b["cotbridge_output"] and a["lmeval_output"] == b["lmeval_output"]
        for a, b in zip(r["per_question"], o["per_question"])
    )
    return f"""
## Both orders

The same comparison with cotbridge run first (`{o["command"]}`, `{other_path.name}`):
lm-eval {u["lmeval_eval"]} s, cotbridge {u["cotbridge_eval"]} s, ratio **{u["ratio_cotbridge_over_lmeval_eval"]}**
(lm-eval first: {t["ratio_cotbridge_over_lmeval_eval"]}). {order_note}
Pooled over both orders: lm-eval {lm:.1f} s, cotbridge {cb:.1f} s, ratio **{cb / lm:.3f}**.
Generations and answers identical between the two runs: {same}.
"""


def runs_text(r: dict[str, Any]) -> str:
    runs = r.get("runs") or []
    if len(runs) <= 2:
        return ""
    each = ", ".join(f"{x['tool']} {x['eval_s']} s" for x in runs)
    return (
        f"Times above are summed over the runs of each tool, in this order: {each} "
        f"(generated texts identical between runs of a tool).\n\n"
    )


def markdown(r: dict[str, Any], outp: Path | None = None) -> str:
    s, m, a, t, c = r["settings"], r["machine"], r["accuracy"], r["time_s"], r["comparison"]
    ok = lambda b: "met" if b else "MISSED"  # noqa: E731
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    cs = c["cross_scoring"]
    disagree = [x for x in r["per_question"] if not (x["cotbridge_correct"] == x["lmeval_flexible_correct"])]
    bl, bc = r["batches"]["lmeval"], r["batches"]["cotbridge"]

    def fmt(b: dict[str, Any] | None) -> str:
        if not b:
            return ""
        if "requests" in b:  # slot decoding: one call for every question
            return (
                f"{b['requests']} requests through {b['rows']} slots -> {b['new_tokens']} tok in {b.get('steps')} "
                f"steps ({b.get('accepted')} of {b.get('drafted')} drafted tokens kept), {b['s']} s"
            )
        return f"{b['rows']} x {b['prompt_len']} -> {b['new_tokens']} tok, {b['s']} s"

    batch_rows = "\n".join(
        f"| {i} | {fmt(bl[i] if i < len(bl) else None)} | {fmt(bc[i] if i < len(bc) else None)} |"
        for i in range(max(len(bl), len(bc)))
    )
    lines = (
        "\n".join(
            f"| {x['doc_id']} | {x['gold']} | {x['cotbridge_pred']} | {x['lmeval_flexible']} | {x['output_equal']} |"
            for x in disagree[:20]
        )
        or "| - | | | | |"
    )
    return f"""# cotbridge vs lm-evaluation-harness: GSM8K zero-shot-CoT

Command: `{r["command"]}` ({s["order"]})

Model `{s["model"]}` ({s["dtype"]}; {s["tokenizer"]}), first {s["limit"]} questions of `{s["data"]}`,
cotbridge decoding: {s.get("cotbridge_decoding", "batches")},
batch size {s["batch_size"]} for both, greedy, stop `Q:`, `</s>`, `<|im_end|>`, 256 new tokens.
lm-eval task: {s["lmeval_task"]}; its generation kwargs: `{s["lmeval_gen_kwargs_first_doc"]}`, \
max_gen_toks {s["lmeval_max_gen_toks"]}.
cotbridge: {s["cotbridge_mode"]}. Offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1).

Machine: {m.get("cpu", f"{m['nproc']} CPUs")}, torch {m["torch"]} ({m["torch_threads"]} threads),
transformers {m["transformers"]}, lm_eval {m["lm_eval"]}, Python {m["python"]}; \
load average before/after {m["loadavg_before"][0]:.2f} / {m["loadavg_after"][0]:.2f}.

## Accuracy

| | accuracy |
|---|---:|
| lm-eval strict-match | {pct(a["lmeval_strict_match"])} |
| lm-eval flexible-extract | {pct(a["lmeval_flexible_extract"])} |
| cotbridge (lmeval pipeline: "The answer is N", else last number) | {pct(a["cotbridge"])} |

cotbridge - lm-eval flexible-extract: {a["cotbridge_minus_lmeval_flexible_points"]} points \
(target within {a["target_points"]}: {ok(a["met"])}).

## Time ({s["timing"]})

| | lm-eval | cotbridge | cotbridge / lm-eval |
|---|---:|---:|---:|
| model loading | {t["lmeval_load"]} s | {t["cotbridge_load"]} s | |
| evaluation (excl. loading) | {t["lmeval_eval"]} s | {t["cotbridge_eval"]} s | \
**{t["ratio_cotbridge_over_lmeval_eval"]}** |
| of which generation | {t["lmeval_generate"]} s | {t["cotbridge_generate"]} s | \
{t["ratio_cotbridge_over_lmeval_generate"]} |

{runs_text(r)}Target ({t["target"]}): {ok(t["met"])}. \
Seconds spent waiting for a quiet machine and on re-measured attempts (not in the timings):
{t["lost_to_other_processes"]}.

Per generate() batch (rows, padded prompt length, new tokens generated, seconds):

| batch | lm-eval | cotbridge |
|---:|---|---|
{batch_rows}

## Agreement (per question, n={c["n"]})

- prompts identical: {pct(c["prompts_identical"])}
- generated texts identical: {pct(c["generations_identical"])}
- extracted answers equal, cotbridge vs lm-eval flexible-extract: \
{pct(c["answer_agreement_cotbridge_vs_lmeval_flexible"])}
- extracted answers equal with the same (cotbridge) extraction on both tools' texts: \
{pct(c["answer_agreement_same_extraction"])}
- correct/incorrect verdict equal, cotbridge vs flexible-extract: \
{pct(c["correct_agreement_cotbridge_vs_lmeval_flexible"])}
- cross-scoring: cotbridge's extraction on lm-eval's texts {pct(cs["cotbridge_pipeline_on_lmeval_outputs_acc"])};
  lm-eval's flexible-extract on cotbridge's texts {pct(cs["lmeval_flexible_on_cotbridge_outputs_acc"])}, \
strict-match {pct(cs["lmeval_strict_on_cotbridge_outputs_acc"])}

Questions where the verdicts differ (first 20):

| doc | gold | cotbridge | lm-eval flexible | same text |
|---|---|---|---|---|
{lines}
{both_orders(r, outp)}"""
