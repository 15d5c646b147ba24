"""Every `cotbridge eval` folder holds an Inspect log per task: named so `inspect view` lists it, shaped as Inspect's
EvalLog, with the folder's questions, outputs, verdicts and metrics in it.

inspect_ai itself is not installed here (its reader needs dozens of packages); the shape is checked against what its
published schema (inspect_ai 0.3.285, ``inspect log schema``) requires of the objects this export writes. During
development the logs were also read with inspect_ai's ``read_eval_log`` and opened in ``inspect view``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

import pytest

from cotbridge.evaluation.run import EvalConfig, run_eval

# inspect_ai/log/_file.py: a .json log is listed only under this name pattern; {created}_{task}_{id}
INSPECT_LOG_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}[:-]\d{2}[:-]\d{2}.*\.json$")

# The keys Inspect's schema requires (it writes them always), per object written here.
REQUIRED = {
    "EvalLog": {"version", "status", "eval", "plan", "stats", "invalidated", "tags", "metadata"},
    "EvalSpec": {
        "eval_id",
        "run_id",
        "created",
        "task",
        "task_id",
        "task_version",
        "task_attribs",
        "task_args",
        "task_args_passed",
        "dataset",
        "model",
        "model_generate_config",
        "model_args",
        "config",
        "packages",
    },
    "EvalPlan": {"name", "steps", "config"},
    "EvalPlanStep": {"solver", "params", "params_passed"},
    "EvalResults": {"total_samples", "completed_samples", "scores"},
    "EvalScore": {"name", "scorer", "params", "metrics"},
    "EvalMetric": {"name", "value", "params"},
    "EvalSample": {
        "id",
        "epoch",
        "input",
        "target",
        "messages",
        "output",
        "metadata",
        "store",
        "events",
        "model_usage",
        "role_usage",
        "attachments",
    },
    "ChatMessage": {"role", "content"},
    "ModelOutput": {"model", "choices", "completion"},
    "ChatCompletionChoice": {"message", "stop_reason"},
    "ModelUsage": {"input_tokens", "output_tokens", "total_tokens"},
    "Score": {"value", "history"},
}
STOP_REASONS = {"stop", "max_tokens", "model_length", "tool_calls", "content_filter", "unknown"}
ROLES = {"system", "user", "assistant", "tool"}


def has(obj, kind: str) -> None:
    assert isinstance(obj, dict), f"{kind} is a {type(obj).__name__}"
    missing = REQUIRED[kind] - set(obj)
    assert not missing, f"{kind} lacks {sorted(missing)}"


def usage_ok(u) -> None:
    has(u, "ModelUsage")
    assert all(isinstance(u[k], int) for k in REQUIRED["ModelUsage"])
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]


def check_inspect_log(log: dict) -> None:
    """The structure and types Inspect's EvalLog models require, for every object of ``log``."""
    has(log, "EvalLog")
    assert log["version"] == 2 and log["status"] in {"started", "success", "cancelled", "error"}
    spec = log["eval"]
    has(spec, "EvalSpec")
    assert datetime.fromisoformat(spec["created"]).tzinfo is not None  # Inspect's UtcDatetimeStr
    assert isinstance(spec["task"], str) and isinstance(spec["model"], str)
    assert isinstance(spec["task_version"], (int, str)) and "_" not in spec["task_id"]
    assert isinstance(spec["dataset"], dict) and isinstance(spec["config"], dict)
    has(log["plan"], "EvalPlan")
    for step in log["plan"]["steps"]:
        has(step, "EvalPlanStep")
    has(log["results"], "EvalResults")
    for score in log["results"]["scores"]:
        has(score, "EvalScore")
        for name, metric in score["metrics"].items():
            has(metric, "EvalMetric")
            assert metric["name"] == name and type(metric["value"]) in (int, float)
    for u in log["stats"]["model_usage"].values():
        usage_ok(u)
    for s in log["samples"]:
        has(s, "EvalSample")
        assert isinstance(s["id"], (str, int)) and isinstance(s["epoch"], int)
        assert isinstance(s["input"], (str, list)) and isinstance(s["target"], (str, list))
        for m in s["messages"] + [c["message"] for c in s["output"]["choices"]]:
            has(m, "ChatMessage")
            assert m["role"] in ROLES and isinstance(m["content"], str)
        has(s["output"], "ModelOutput")
        usage_ok(s["output"]["usage"])
        for c in s["output"]["choices"]:
            has(c, "ChatCompletionChoice")
            assert c["stop_reason"] in STOP_REASONS
        for score in s["scores"].values():
            has(score, "Score")
            assert isinstance(score["value"], (str, int, float, bool, list, dict))
            assert score.get("answer") is None or isinstance(score["answer"], str)


def inspect_logs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if INSPECT_LOG_NAME.match(p.name))


def test_each_eval_writes_an_inspect_log_of_its_records(tmp_path, scripted):
    backend = scripted(lambda p, r: [" 1 + 2 = 3 --> 3"])
    cfg = EvalConfig(tasks=["synthetic_arithmetic:k=2,n_test=6"], mode="finetune_cot", output=str(tmp_path))
    summary = run_eval(cfg, backend=backend, progress=False)
    [path] = inspect_logs(tmp_path)
    assert path.name.split("_")[1] == "synthetic-arithmetic"  # the task as Inspect's listing reads it
    log = json.loads(path.read_text())
    check_inspect_log(log)
    records = [json.loads(x) for x in (tmp_path / "synthetic_arithmetic.jsonl").read_text().splitlines()]
    metrics = summary["results"]["synthetic_arithmetic"]
    assert log["status"] == "success" and log["eval"]["task"] == "synthetic_arithmetic"
    assert log["eval"]["model"] == "hf/scripted" and log["eval"]["dataset"]["samples"] == 6
    [score] = log["results"]["scores"]
    assert score["metrics"]["accuracy"]["value"] == metrics["accuracy"]
    assert score["metrics"]["stderr"]["value"] == metrics["accuracy_stderr"]
    assert 0 < metrics["accuracy"] < 1  # both verdicts appear below
    assert [s["id"] for s in log["samples"]] == [r["id"] for r in records]
    for s, r in zip(log["samples"], records):
        assert s["input"] == r["question"] and s["target"] == r["gold"]
        assert s["scores"]["match"]["value"] == ("C" if r["correct"] else "I")
        assert s["scores"]["match"]["answer"] == r["prediction"] == "3"
        assert s["output"]["completion"] == r["samples"][0]["output"] == " 1 + 2 = 3 --> 3"
        assert [m["role"] for m in s["messages"]] == ["user", "assistant"]
        assert s["messages"][0]["content"] == r["prompt"]

    rerun = cfg.model_copy(update={"cache": "off"})  # the request cache would answer as before
    run_eval(rerun, backend=scripted(lambda p, r: [" --> 4"]), progress=False)  # a rerun replaces its log
    [again] = inspect_logs(tmp_path)
    assert {s["scores"]["match"]["answer"] for s in json.loads(again.read_text())["samples"]} == {"4"}


def test_self_consistency_samples_are_choices_and_the_answer_stage_a_message(tmp_path, scripted):
    def respond(prompt, req):
        if prompt.endswith("Therefore, the answer (arabic numerals) is"):
            return [" 5."]
        return [" two and three make five", " it is 6", " five"][: req.n]

    cfg = EvalConfig(tasks=["synthetic_arithmetic:k=2,n_test=3"], k=3, output=str(tmp_path))
    run_eval(cfg, backend=scripted(respond), progress=False)
    [path] = inspect_logs(tmp_path)
    log = json.loads(path.read_text())
    check_inspect_log(log)
    assert log["eval"]["model_generate_config"]["num_choices"] == 3
    assert log["eval"]["model_generate_config"]["temperature"] == 0.7
    s = log["samples"][0]
    assert [c["message"]["content"] for c in s["output"]["choices"]] == [
        " two and three make five",
        " it is 6",
        " five",
    ]
    assert [m["role"] for m in s["messages"]] == ["user", "assistant", "assistant"]
    assert s["messages"][2] == {**s["messages"][2], "content": " 5.", "metadata": {"stage": "answer"}}
    assert "majority vote '5' (3 of 3 samples)" in s["scores"]["match"]["explanation"]
    assert "pass@3" in log["results"]["scores"][0]["metrics"]


def test_chat_prompts_become_messages(tmp_path, scripted):
    cfg = EvalConfig(tasks=["synthetic_coin_flip:n_test=2"], mode="chat_cot", chat=True, output=str(tmp_path))
    run_eval(cfg, backend=scripted(lambda p, r: [" The answer is yes."]), progress=False)
    [path] = inspect_logs(tmp_path)
    log = json.loads(path.read_text())
    check_inspect_log(log)
    records = [json.loads(x) for x in (tmp_path / "synthetic_coin_flip.jsonl").read_text().splitlines()]
    s, r = log["samples"][0], records[0]
    assert isinstance(r["prompt"], list)
    assert [(m["role"], m["content"]) for m in s["messages"][:-1]] == [(m["role"], m["content"]) for m in r["prompt"]]
    assert {x["scores"]["match"]["value"] for x in log["samples"]} == {"C" if x["correct"] else "I" for x in records}


def test_a_failing_export_costs_a_warning_not_the_evaluation(tmp_path, scripted, monkeypatch, caplog):
    import cotbridge.evaluation.inspect_log as inspect_log

    def broken(out):
        raise OSError("disk full")

    monkeypatch.setattr(inspect_log, "write_inspect_logs", broken)
    cfg = EvalConfig(tasks=["synthetic_arithmetic:k=2,n_test=2"], mode="finetune_cot", output=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        summary = run_eval(cfg, backend=scripted(lambda p, r: [" --> 3"]), progress=False)
    assert summary["results"]["synthetic_arithmetic"]["n"] == 2 and (tmp_path / "results.json").is_file()
    assert not inspect_logs(tmp_path)
    assert "no Inspect log written" in caplog.text and "disk full" in caplog.text


@pytest.mark.parametrize("bad", [float("nan"), True, "math"])
def test_only_finite_numbers_become_inspect_metrics(bad):
    from cotbridge.evaluation.inspect_log import score_metrics

    assert score_metrics({"accuracy": 0.5, "accuracy_stderr": 0.1, "n": 4, "odd": bad}) == {
        "accuracy": 0.5,
        "stderr": 0.1,
    }


def test_a_local_model_folder_is_named_by_its_name_with_the_path_kept():
    from datetime import timezone

    from cotbridge.evaluation.inspect_log import eval_log

    summary = {
        "model": "/home/u/runs/quickstart/students/finetune_cot",
        "mode": "finetune_cot",
        "results": {"svamp": {"n": 0, "k": 1, "accuracy": 0.0, "accuracy_stderr": 0.0}},
        "config": {"backend": "hf", "k": 1},
    }
    log = eval_log(summary, "svamp", [], datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    check_inspect_log(log)
    assert log["eval"]["model"] == "hf/finetune_cot"  # not "hf//home/u/...": Inspect's "<provider>/<model>"
    assert log["eval"]["model_args"]["path"] == summary["model"]
    assert log["eval"]["created"] == "2026-01-02T03:04:05+00:00"
