"""Synthetic run directories in the Fine-tune-CoT layout, for `cotbridge view`'s tests and bench/view_scale.py.

The files are written with the project's own writers (EvalRecord / TeacherRecord shapes, curate(), write_report), so
they have the shapes a real run has; correctness follows a seeded pattern, so filters and flips have known counts.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from cotbridge.answers.score import Verdict
from cotbridge.curate import CurateSettings, curate
from cotbridge.evaluation.metrics import mean_and_stderr
from cotbridge.inference.records import EvalRecord, EvalSample, TeacherRecord
from cotbridge.jsonl import write_json, write_jsonl

TASK = "synthetic_coin_flip"
PAYLOAD = '</script><script>alert(1)</script><img src=x onerror="window.__pwned=1">'
METHODS = ("zero_shot_cot", "vanilla", "finetune_cot", "finetune_cot_diverse")
NAMES = ("Martin", "Theo", "Gerald", "Ellen", "Laura", "Keith", "Oscar", "Dolores", "Caleb", "Nadia")


def coin_question(rng: random.Random) -> tuple[str, str, list[tuple[str, bool]]]:
    people = [(name, rng.random() < 0.5) for name in rng.sample(NAMES, 4)]
    text = " ".join(f"{n} {'flips' if f else 'does not flip'} the coin." for n, f in people)
    gold = "yes" if sum(f for _, f in people) % 2 == 0 else "no"
    return (
        f'A coin is heads up. {text} Is the coin still heads up? Note that "flip" here means "reverse".',
        gold,
        people,
    )


def rationale(people: list[tuple[str, bool]], wrong_at: int | None = None) -> tuple[str, str]:
    heads, steps = True, ["The coin starts heads up."]
    for i, (name, flips) in enumerate(people):
        if flips != (i == wrong_at):
            heads = not heads
            steps.append(f"{name} flips it, so it is now {'heads' if heads else 'tails'} up.")
        else:
            steps.append(f"{name} does not flip it, so it stays {'heads' if heads else 'tails'} up.")
    answer = "yes" if heads else "no"
    return " ".join(steps) + f" So {answer}, the coin is {'still' if heads else 'not'} heads up.", answer


def verdict(prediction: str | None, gold: str, complete: bool = True) -> Verdict:
    ok = prediction == gold
    return Verdict(prediction, ok, ok, prediction is not None, complete, "yesno" if prediction else None)


def synthesize_run(
    root: str | Path,
    n: int = 40,
    *,
    n_train: int | None = None,
    methods: tuple[str, ...] = METHODS,
    accuracy: dict[str, float] | None = None,
    seed: int = 0,
    payload_at: int | None = None,
    name: str = "quickstart",
    report: bool = True,
    long_every: int = 7,
) -> dict[str, Any]:
    """Write a run directory; returns what the page must show: per method the ids it got right, the teacher
    records written, and the curation statistics. Question ``payload_at`` carries PAYLOAD in its question, its
    outputs and its teacher rationale; every ``long_every``-th output is long (folded in the page)."""
    root = Path(root)
    acc = {"zero_shot_cot": 0.15, "vanilla": 0.5, "finetune_cot": 0.75, "finetune_cot_diverse": 0.95}
    acc.update(accuracy or {})
    qrng = random.Random(1234)  # the same questions whatever the seed: two runs compare question by question
    rng = random.Random(seed)
    n_train = n if n_train is None else n_train
    config = {
        "name": name,
        "run_dir": str(root),
        "task": f"{TASK}:k=4",
        "train_limit": n_train,
        "teacher": {"backend": "reference", "model": None, "options": {"error_rate": 0.2}},
        "teach_mode": "zero_shot_cot",
        "curate": {"filters": ["has_output", "correct"], "dedupe": True},
        "eval": {"split": "test", "limit": n},
        "methods": [
            {"name": m, "kind": "prompt" if m == "zero_shot_cot" else "vanilla" if m == "vanilla" else "distill"}
            for m in methods
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    # teacher: D=1 and D=3 files over the training questions, 20% wrong samples, repeated rationales in D=3
    teacher_written: dict[str, list[dict[str, Any]]] = {}
    train = [coin_question(qrng) for _ in range(n_train)]
    for d in (1, 3):
        records = []
        for i, (question, gold, people) in enumerate(train):
            for s in range(d):
                wrong = rng.random() < 0.2
                text, answer = rationale(people, wrong_at=rng.randrange(4) if wrong else None)
                if s == 2 and not wrong and rng.random() < 0.3:
                    text = records[-2]["rationale"] if records[-2]["correct"] else text  # a duplicate to dedupe
                if payload_at is not None and i == payload_at:
                    text += " " + PAYLOAD
                rec = TeacherRecord(
                    key=f"train-{i}#{s}",
                    task=TASK,
                    split="train",
                    example_id=f"train-{i}",
                    sample=s,
                    question=question,
                    gold=gold,
                    teacher={"backend": "reference", "model": "reference"},
                    mode="zero_shot_cot",
                    temperature=0.0 if d == 1 else 0.7,
                    prompts={"rationale": f"Q: {question}\nA: Let's think step by step.", "answer": None},
                    rationale=text,
                    answer_output=f" {answer}.",
                    finish_reason={"rationale": "stop", "answer": "stop"},
                    verdict=verdict(answer, gold),
                    usage={"prompt_tokens": 60, "completion_tokens": 50},
                    cost_usd=None,
                ).to_dict()
                records.append(rec)
        stem = f"{TASK}.D{d}"
        write_jsonl(root / "teacher" / f"{stem}.jsonl", records)
        write_json(
            root / "teacher" / f"{stem}.summary.json",
            {
                "task": TASK,
                "split": "train",
                "teacher": {"backend": "reference", "model": "reference"},
                "records": len(records),
                "accuracy": sum(r["correct"] for r in records) / len(records),
                "questions": n_train,
                "questions_with_a_correct_sample": len({r["example_id"] for r in records if r["correct"]}),
                "prompt_tokens": 60 * len(records),
                "completion_tokens": 50 * len(records),
                "cost_usd": 0.0,
            },
        )
        teacher_written[stem] = records

    curation: dict[str, dict[str, Any]] = {}
    for m in methods:
        if m == "zero_shot_cot":
            continue
        out = root / "data" / m
        if m == "vanilla":
            write_json(out / "curation.json", {"examples": n_train, "format": "vanilla"})
            continue
        stem = f"{TASK}.D{3 if m.endswith('diverse') else 1}"
        settings = CurateSettings(filters=["has_output", "correct"], dedupe=True)
        kept, stats = curate(teacher_written[stem], settings)
        stats.update({"source": str(root / "teacher" / f"{stem}.jsonl"), "format": "finetune_cot"})
        stats["examples"] = len(kept)
        write_json(out / "curation.json", stats)
        write_jsonl(out / "train.jsonl", [{"prompt": r["question"], "completion": r["rationale"]} for r in kept])
        curation[m] = stats

    # eval: the test questions, each method right with its own probability
    test = [coin_question(qrng) for _ in range(n)]
    right: dict[str, set[str]] = {}
    for m in methods:
        records, right[m] = [], set()
        for i, (question, gold, people) in enumerate(test):
            ok = rng.random() < acc.get(m, 0.5)
            text, answer = rationale(people, wrong_at=None if ok else rng.randrange(4))
            if m == "vanilla":
                text = ""
            elif long_every and i % long_every == 0:
                text = "\n".join([text] * 6)
            if payload_at is not None and i == payload_at:
                question_text, text = f"{question} {PAYLOAD}", f"{text} {PAYLOAD}"
            else:
                question_text = question
            prediction = answer if rng.random() > 0.05 else None
            v = verdict(prediction, gold)
            sample = EvalSample(text + f" --> {answer}", "stop", {"prompt_tokens": 50, "completion_tokens": 60}, v)
            rec = EvalRecord(
                f"test-{i}", question_text, gold, f"{question_text} ###", [sample], prediction, v.correct
            ).to_dict()
            records.append(rec)
            if v.correct:
                right[m].add(f"test-{i}")
        accuracy_, stderr = mean_and_stderr([float(r["correct"]) for r in records])
        summary = {
            "model": str(root / "students" / m),
            "mode": "finetune_cot",
            "results": {TASK: {"n": n, "k": 1, "accuracy": accuracy_, "accuracy_stderr": stderr}},
            "tasks": {TASK: {"version": "1.1", "answer_type": "yesno", "split": "test", "params": {"k": 4}}},
        }
        write_jsonl(root / "eval" / m / f"{TASK}.jsonl", records)
        write_json(root / "eval" / m / "results.json", summary)
    if report:
        from cotbridge.reporting.report import write_report
        from cotbridge.reporting.rows import rows_from_results

        rows = []
        for m in methods:
            from cotbridge.jsonl import read_json

            rows += rows_from_results(read_json(root / "eval" / m / "results.json"), method=m)
        write_report(rows, root, title=f"cotbridge run: {name}", notes=f"Task `{TASK}:k=4` (test split).")
    return {"right": right, "teacher": teacher_written, "curation": curation, "n": n}
