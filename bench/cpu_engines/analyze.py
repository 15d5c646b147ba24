import collections
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA, WORK

runs = collections.defaultdict(list)
for f in sorted(glob.glob(os.path.join(WORK, "out/*.json"))):
    d = json.load(open(f))
    if d["run"] == "smoke" or "_n" in f.rsplit("/", 1)[1].replace("_nan", ""):
        continue
    runs[d["engine"]].append(d)


def last_num(t):
    m = re.findall(r"-?\d[\d,]*(?:\.\d+)?", t)
    return m[-1].replace(",", "").rstrip(".") if m else None


def med(x):
    return statistics.median(x)


fp32 = runs["cotbridge_fp32"][0]["texts"]
ref_def = med([d["gen_s"] for d in runs["cotbridge_default"]])
ref_32 = med([d["gen_s"] for d in runs["cotbridge_fp32"]])
gold = []
for line in open(os.path.join(DATA, "gsm8k/test.jsonl")):
    gold.append(json.loads(line)["answer"].split("####")[-1].strip().replace(",", ""))
    if len(gold) == 32:
        break
rows = []
order = (
    ["cotbridge_default", "cotbridge_fp32"]
    + sorted(k for k in runs if k.startswith("ct2"))
    + sorted(k for k in runs if k.startswith("llama"))
)
for k in order:
    ds = runs[k]
    t = ds[0]["texts"]
    g = [d["gen_s"] for d in ds]
    same_runs = all(d["texts"] == t for d in ds)
    ident = sum(a == b for a, b in zip(t, fp32)) / 32 * 100
    ident_strip = sum(a.strip() == b.strip() for a, b in zip(t, fp32)) / 32 * 100
    ans = sum(last_num(a) == last_num(b) for a, b in zip(t, fp32)) / 32 * 100
    acc = sum(last_num(a) == gg for a, gg in zip(t, gold)) / 32 * 100
    tokens = ds[0]["tokens"]
    useful = ds[0].get("useful_tokens", tokens)
    rows.append(
        dict(
            engine=k,
            runs=[round(x, 2) for x in g],
            gen_s=round(med(g), 2),
            load_s=round(med([d["load_s"] for d in ds]), 2),
            tokens=tokens,
            useful_tokens=useful,
            tok_s=round(tokens / med(g), 1),
            useful_tok_s=round(useful / med(g), 1),
            speedup_vs_default=round(ref_def / med(g), 2),
            speedup_vs_fp32=round(ref_32 / med(g), 2),
            identical_text_vs_fp32_pct=round(ident, 1),
            identical_stripped_pct=round(ident_strip, 1),
            answer_agree_vs_fp32_pct=round(ans, 1),
            gsm8k_acc_pct=round(acc, 1),
            deterministic_across_runs=same_runs,
        )
    )
json.dump(
    dict(
        rows=rows,
        meta={
            k: {
                kk: v
                for kk, v in runs[k][0].items()
                if kk
                not in (
                    "texts",
                    "per_tokens",
                    "finish",
                    "run",
                    "gen_s",
                    "load_s",
                    "tokens",
                    "tok_per_s",
                    "useful_tokens",
                    "useful_tok_per_s",
                )
            }
            for k in order
        },
    ),
    open(os.path.join(WORK, "results.json"), "w"),
    indent=1,
)
hdr = "| engine | gen s (runs) | median gen s | load s | decoded tok | useful tok | tok/s (decoded) | tok/s (useful) | speedup vs default | speedup vs fp32 | identical text vs fp32 % | last-number agree vs fp32 % | GSM8K acc % (32) |"  # noqa: E501
print(hdr)
print("|" + "---|" * hdr.count("|")[:-1] if False else "|" + "---|" * (hdr.count("|") - 1))
for r in rows:
    print(
        f"| {r['engine']} | {', '.join(map(str, r['runs']))} | {r['gen_s']} | {r['load_s']} | {r['tokens']} | {r['useful_tokens']} | {r['tok_s']} | {r['useful_tok_s']} | {r['speedup_vs_default']}x | {r['speedup_vs_fp32']}x | {r['identical_text_vs_fp32_pct']} | {r['answer_agree_vs_fp32_pct']} | {r['gsm8k_acc_pct']} |"  # noqa: E501
    )
