"""An Inspect AI log of a ``cotbridge eval`` folder, so ``inspect view`` shows its questions, outputs and scores.

Written as plain JSON in the layout of Inspect's ``EvalLog`` pydantic models (``inspect_ai/log/_log.py``, log
format version 2; checked against inspect_ai 0.3.285's ``read_eval_log``) instead of through inspect_ai itself, whose
reader alone pulls in dozens of packages (textual, httpx, fsspec, s3fs, boto3, ...). One log per task:
``<created>_<task>_<id>.json``, the name Inspect gives its own logs: ``inspect view`` lists a ``.json`` log only
under a timestamp prefix, and reads the task from the second ``_``-separated part (so the task's own ``_`` become
``-``, as Inspect's ``clean_filename_component`` does).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cotbridge.inference.two_stage import sampling_temperature
from cotbridge.jsonl import read_json, read_jsonl, write_json

LOG_VERSION = 2  # inspect_ai's LOG_SCHEMA_VERSION: a reader refuses a higher one
SCORER = "match"
# Inspect's own logs start with the creation time, ':' and '+' made '-'
LOG_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}[:-]\d{2}[:-]\d{2}[^_]*_(?P<task>[^_]+)_[^_]+\.json$")
# anything else is Inspect's "unknown"; a prompt longer than the context window is Inspect's "model_length"
STOP_REASONS = {"stop": "stop", "length": "max_tokens", "context_overflow": "model_length"}
NOT_METRICS = {"n", "k", "wall_time_s"}  # counts and timings in results.json, not scores


def file_component(text: str) -> str:
    """Inspect's ``clean_filename_component``: the log name splits on '_'."""
    return re.sub(r"[_/:+]", "-", text)


def write_inspect_logs(out: str | Path, created: datetime | None = None) -> list[Path]:
    """One Inspect log per task of the eval folder ``out`` (results.json + <task>.jsonl); a rerun's log replaces the
    earlier one of the same task (the folder holds one evaluation: ``check_output``)."""
    out = Path(out)
    summary = read_json(out / "results.json")
    created = created or datetime.now(timezone.utc)
    written = []
    for task in summary["results"]:
        log = eval_log(summary, task, list(read_jsonl(out / f"{task}.jsonl")), created)
        path = out / f"{file_component(log['eval']['created'])}_{file_component(task)}_{log['eval']['task_id']}.json"
        write_json(path, log)
        for old in out.glob("*.json"):
            m = LOG_NAME.match(old.name)
            if m and m["task"] == file_component(task) and old != path:
                old.unlink()
        written.append(path)
    return written


def eval_log(summary: dict[str, Any], task: str, records: list[dict[str, Any]], created: datetime) -> dict[str, Any]:
    """The ``EvalLog`` of one task of an evaluation summary (results.json) and its per-question records."""
    cfg, metrics = summary.get("config") or {}, summary["results"][task]
    info = (summary.get("tasks") or {}).get(task, {})
    # Inspect names models "<provider>/<model>"; a local folder's absolute path would read "hf//home/...": its name
    # stands in, the path goes to model_args
    path = str(summary["model"])
    model = f"{cfg.get('backend') or 'hf'}/{Path(path).name if Path(path).is_absolute() else path}"
    k = int(metrics.get("k") or cfg.get("k") or 1)
    generate = {
        k_: v
        for k_, v in {
            "max_tokens": cfg.get("max_tokens"),
            "top_p": cfg.get("top_p"),
            "temperature": sampling_temperature(cfg.get("temperature"), k),
            "stop_seqs": cfg.get("stop"),
            "seed": cfg.get("seed"),
            "num_choices": k if k > 1 else None,
        }.items()
        if v is not None
    }
    stamp = created.astimezone(timezone.utc).isoformat(timespec="seconds")
    started = (created - timedelta(seconds=float(metrics.get("wall_time_s") or 0))).astimezone(timezone.utc)
    samples = [eval_sample(r, model) for r in records]
    params = {"k": k, "chat": bool(cfg.get("chat")), "generic_trigger": bool(cfg.get("generic_trigger"))}
    scorer = {"answer_type": info.get("answer_type"), "pipeline": cfg.get("pipeline")}
    return {
        "version": LOG_VERSION,
        "status": "success",
        "eval": {
            "eval_id": short_id(),
            "run_id": short_id(),
            "created": stamp,
            "task": task,
            "task_id": short_id(),
            "task_version": info.get("version", 0),
            "task_attribs": {},
            "task_args": info.get("params") or {},
            "task_args_passed": info.get("params") or {},
            "solver": summary.get("mode") or cfg.get("mode"),
            "dataset": {
                "name": task,
                **({"location": cfg["data_dir"]} if cfg.get("data_dir") else {}),
                "samples": len(records),
                "sample_ids": [s["id"] for s in samples],
                "shuffled": False,
            },
            "model": model,
            "model_generate_config": generate,
            "model_args": {
                **({"path": path} if Path(path).is_absolute() else {}),
                **{k_: cfg[k_] for k_ in ("gguf_file", "dtype", "chat") if cfg.get(k_) is not None},
            },
            "config": {"epochs": 1, **({"limit": cfg["limit"]} if cfg.get("limit") else {})},
            "packages": summary.get("versions") or {},
            "metadata": {"split": info.get("split"), "cotbridge_config": cfg},
            "scorers": [{"name": SCORER, "options": scorer, "metrics": [{"name": n} for n in score_metrics(metrics)]}],
        },
        "plan": {
            "name": "plan",
            # one step: the prompt mode's two-stage routine (rationale, then the answer where the mode asks for it)
            "steps": [
                {
                    "solver": f"cotbridge/{cfg.get('mode') or summary.get('mode')}",
                    "params": params,
                    "params_passed": params,
                }
            ],
            "config": generate,
        },
        "results": {
            "total_samples": len(records),
            "completed_samples": len(records),
            "scores": [
                {
                    "name": SCORER,
                    "scorer": SCORER,
                    "scored_samples": len(records),
                    "unscored_samples": 0,
                    "params": scorer,
                    "metrics": {n: {"name": n, "value": v, "params": {}} for n, v in score_metrics(metrics).items()},
                }
            ],
        },
        "stats": {
            "started_at": started.isoformat(timespec="seconds"),
            "completed_at": stamp,
            "model_usage": {model: total_usage(s["output"]["usage"] for s in samples)},
            "role_usage": {},
            "connection_limit_history": [],
        },
        "invalidated": False,
        "tags": [],
        "metadata": {},
        "samples": samples,
    }


def score_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """results.json's metrics as Inspect's: numbers only, ``accuracy_stderr`` under Inspect's name ``stderr``."""
    out = {}
    for name, value in metrics.items():
        if name in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):  # Inspect's metric value is a number; a NaN would not read back as one
            out["stderr" if name == "accuracy_stderr" else name] = value
    return out


def eval_sample(rec: dict[str, Any], model: str) -> dict[str, Any]:
    """One question: its prompt and the first sample as the conversation, every sample as a choice, the vote as
    the score."""
    samples = rec.get("samples") or []
    choices = [
        {
            "message": {
                "role": "assistant",
                "content": s.get("output") or "",
                "source": "generate",
                "model": model,
                # the answer stage's own output and this sample's verdict: the viewer shows message metadata
                "metadata": {
                    k: s[k]
                    for k in ("answer_output", "prediction", "correct", "rule", "finish_reason", "skipped")
                    if k in s
                },
            },
            "stop_reason": STOP_REASONS.get(s.get("finish_reason") or "", "unknown"),
        }
        for s in samples
    ]
    usage = total_usage(
        {
            "input_tokens": (s.get("usage") or {}).get("prompt_tokens", 0),
            "output_tokens": (s.get("usage") or {}).get("completion_tokens", 0),
        }
        for s in samples
    )
    messages = prompt_messages(rec.get("prompt"), rec.get("question") or "")
    if choices:
        messages.append(choices[0]["message"])
        if samples[0].get("answer_output") is not None:
            messages.append(
                {
                    "role": "assistant",
                    "content": samples[0]["answer_output"],
                    "source": "generate",
                    "model": model,
                    "metadata": {"stage": "answer"},  # the answer asked for given the rationale above
                }
            )
    prediction = rec.get("prediction")
    score: dict[str, Any] = {
        "value": "C" if rec.get("correct") else "I",
        "answer": prediction,
        "explanation": explanation(rec, samples),
        "history": [],
    }
    if rec.get("em") is not None:
        score["metadata"] = {"em": rec["em"], "f1": rec.get("f1")}
    return {
        "id": str(rec.get("id")),
        "epoch": 1,
        "input": rec.get("question") or text_of(rec.get("prompt")),
        "target": str(rec.get("gold") or ""),
        "messages": messages,
        "output": {
            "model": model,
            "choices": choices,
            "completion": choices[0]["message"]["content"] if choices else "",
            "usage": usage,
        },
        "scores": {SCORER: score},
        "metadata": {},
        "store": {},
        "events": [],
        "model_usage": {model: usage},
        "role_usage": {},
        "attachments": {},
    }


def explanation(rec: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    prediction, gold = rec.get("prediction"), rec.get("gold")
    if rec.get("skipped"):
        return f"not asked: {rec['skipped']}; counted wrong; gold {gold!r}"
    if prediction is None:
        return f"no answer found in the output; gold {gold!r}"
    if len(samples) > 1:
        votes = sum(s.get("prediction") == prediction for s in samples)
        return f"majority vote {prediction!r} ({votes} of {len(samples)} samples); gold {gold!r}"
    rule = samples[0].get("rule") if samples else None
    return f"extracted {prediction!r}" + (f" (rule {rule})" if rule else "") + f"; gold {gold!r}"


def prompt_messages(prompt: Any, question: str) -> list[dict[str, Any]]:
    """The record's prompt as Inspect chat messages: a text prompt is one user message."""
    if isinstance(prompt, list):
        return [
            {
                "role": m.get("role") if m.get("role") in ("system", "user", "assistant") else "user",
                "content": str(m.get("content") or ""),
                "source": "input",
            }
            for m in prompt
            if isinstance(m, dict)
        ]
    return [{"role": "user", "content": prompt if isinstance(prompt, str) else question, "source": "input"}]


def text_of(prompt: Any) -> str:
    if isinstance(prompt, list):
        return "\n\n".join(str(m.get("content") or "") for m in prompt if isinstance(m, dict))
    return str(prompt or "")


def total_usage(parts: Any) -> dict[str, int]:
    """Inspect's ``ModelUsage``: input, output and total tokens."""
    inp = out = 0
    for p in parts:
        inp += int(p.get("input_tokens") or 0)
        out += int(p.get("output_tokens") or 0)
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def short_id() -> str:
    # Inspect's ids are 22-character shortuuids; any string without '_' (the log name's separator) reads back
    return uuid.uuid4().hex[:22]
