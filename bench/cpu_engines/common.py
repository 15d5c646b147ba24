"""Shared by the engine comparison scripts: the workload (32 GSM8K prompts, greedy, 256 new tokens, 16 in flight).
WORK is the scratch folder (converted models, outputs): $ENGINES_WORK, default bench/cpu_engines/.work (ignored)."""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
WORK = os.environ.get("ENGINES_WORK", os.path.join(HERE, ".work"))
GGUF_DIR = os.path.join(DATA, "models/smollm2-135m-instruct-q4_1")
GGUF = GGUF_DIR + "/SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_NEW = 256
BATCH = 16


def prompts(n=32):
    qs = []
    with open(os.path.join(DATA, "gsm8k/test.jsonl")) as f:
        for line in f:
            qs.append(json.loads(line)["question"])
            if len(qs) == n:
                break
    return [f"Q: {q}\nA: Let's think step by step." for q in qs]


def cut_stop(text, stop=("Q:",)):
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
