"""The evaluation loop with scripted backends: two-stage prompts, self-consistency, outputs on disk."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from cotbridge.evaluation.run import EvalConfig, run_eval
from cotbridge.evaluation.scoring import Decoding, evaluate_examples
from cotbridge.prompts.modes import PromptContext
from cotbridge.tasks import Example, get_task
from tests.conftest import without_timings


def test_two_stage_zero_shot_cot_builds_kojima_prompts(scripted):
    task = get_task("svamp")
    ex = Example(id="1", question="Tom has 3 apples and buys 4. How many?", answer="7")

    def respond(prompt, req):
        return [" 3 + 4 = 7." if prompt.endswith("Let's think step by step.") else " 7."]

    backend = scripted(respond)
    records, metrics = evaluate_examples(task, [ex], backend, "zero_shot_cot", PromptContext(task), Decoding())
    first, second = backend.requests
    assert first.prompt == "Q: Tom has 3 apples and buys 4. How many?\nA: Let's think step by step."
    assert second.prompt == first.prompt + " 3 + 4 = 7.\nTherefore, the answer (arabic numerals) is"
    assert second.temperature == 0.0 and second.n == 1
    assert records[0]["samples"][0]["answer_output"] == " 7." and records[0]["correct"]
    assert metrics["accuracy"] == 1.0


def test_generic_trigger_option(scripted):
    task = get_task("coin_flip")
    backend = scripted(lambda p, r: [" yes"])
    ex = Example(id="1", question="A coin is heads up. Is it still heads up?", answer="yes")
    evaluate_examples(task, [ex], backend, "zero_shot_cot", PromptContext(task, generic_trigger=True), Decoding())
    assert backend.requests[1].prompt.endswith("\nTherefore, the answer is")


def test_self_consistency_votes_and_reports_pass_at_k(scripted):
    task = get_task("svamp")
    examples = [Example(id="a", question="qa", answer="5"), Example(id="b", question="qb", answer="9")]
    outputs = {"qa": ["--> 5", "--> 4", "--> 5", "no answer here"], "qb": ["--> 1", "--> 2", "--> 9", "--> 2"]}

    def respond(prompt, req):
        assert req.n == 4 and req.temperature == 0.7
        return outputs[prompt.removesuffix(" ###")]

    cfg = EvalConfig(k=4)
    records, m = evaluate_examples(
        task, examples, scripted(respond), "finetune_cot", PromptContext(task), cfg.decoding()
    )
    assert [r["prediction"] for r in records] == ["5", "2"]
    assert m["maj@4"] == m["accuracy"] == 0.5
    assert m["pass@1"] == (2 / 4 + 1 / 4) / 2 and m["pass@4"] == 1.0
    assert m["invalid"] == 1 / 8  # "no answer here" has no number


def test_run_eval_writes_results_samples_and_table(tmp_path, scripted):
    backend = scripted(lambda p, r: [" I think --> 3"])
    cfg = EvalConfig(tasks=["synthetic_arithmetic:k=2,n_test=6"], mode="finetune_cot", output=str(tmp_path))
    summary = run_eval(cfg, backend=backend, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tasks"]["synthetic_arithmetic"]["params"] == {"k": 2, "n_test": 6}
    assert results["tasks"]["synthetic_arithmetic"]["version"] and "transformers" in results["versions"]
    lines = [json.loads(x) for x in (tmp_path / "synthetic_arithmetic.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all({"prompt", "gold", "prediction", "samples"} <= set(x) for x in lines)
    expected = sum(x["gold"] == "3" for x in lines) / 6
    assert summary["results"]["synthetic_arithmetic"]["accuracy"] == expected
    assert "| synthetic_arithmetic | 6 |" in (tmp_path / "results.md").read_text()


def test_ids_pick_exactly_those_examples_in_their_order(tmp_path, scripted):
    """EvalConfig.ids: a recipe's shared test set (instruct's columns) is evaluated as given, not a prefix."""
    from cotbridge.errors import UserError

    spec = "synthetic_arithmetic:k=2,n_test=6"
    all_ids = [ex.id for ex in get_task("synthetic_arithmetic").load("test", None, k=2, n_test=6)]
    picked = [all_ids[4], all_ids[1]]
    cfg = EvalConfig(
        tasks=[spec], mode="finetune_cot", output=str(tmp_path / "a"), ids={"synthetic_arithmetic": picked}
    )
    run_eval(cfg, backend=scripted(lambda p, r: [" --> 3"]), progress=False)
    lines = [json.loads(x) for x in (tmp_path / "a" / "synthetic_arithmetic.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == picked
    bad = cfg.model_copy(update={"output": str(tmp_path / "b"), "ids": {"synthetic_arithmetic": ["no-such-id"]}})
    with pytest.raises(UserError, match="no example 'no-such-id'"):
        run_eval(bad, backend=scripted(lambda p, r: [" --> 3"]), progress=False)
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_multihop_prompt_carries_context_and_scores_em_f1(scripted):
    task = get_task("hotpotqa")
    ex = Example(
        id="h", question="Who?", answer="Chief of Protocol", context="Shirley Temple: served as Chief of Protocol."
    )
    backend = scripted(lambda p, r: [" Chief of Protocol of the United States"] if r.n else [])
    records, m = evaluate_examples(task, [ex], backend, "zero_shot", PromptContext(task), Decoding())
    assert "Shirley Temple: served as Chief of Protocol." in backend.requests[0].prompt
    assert m["em"] == 0.0 and 0.6 < m["f1"] < 0.7


class Crashing:
    """A scripted backend that answers request by request (as the HF and API backends report them) and dies
    after ``survive`` answers."""

    kind, model_id = "scripted", "scripted"

    def __init__(self, survive: int | None = None):
        self.survive, self.asked = survive, 0

    def generate(self, requests, progress=True, on_result=None):
        from cotbridge.backends.base import Completion

        out = []
        for i, r in enumerate(requests):
            if self.survive is not None and self.asked == self.survive:
                raise RuntimeError("killed")
            self.asked += 1
            out.append([Completion(f" {len(r.prompt)} --> 3", "stop")])
            if on_result is not None:
                on_result(i, out[-1])
        return out


def test_a_rerun_after_a_crash_asks_only_for_what_is_missing(tmp_path, monkeypatch):
    cfg = EvalConfig(tasks=["synthetic_arithmetic:k=2,n_test=6"], mode="finetune_cot", output=str(tmp_path))
    with pytest.raises(RuntimeError, match="killed"):
        run_eval(cfg, backend=Crashing(survive=4), progress=False)
    resumed = Crashing()
    summary = run_eval(cfg, backend=resumed, progress=False)
    assert resumed.asked == 2  # the 4 answered before the crash came from the evaluation's request cache
    again = Crashing()
    with monkeypatch.context() as slower:  # as on a slower CPU: the rerun's wall time differs, nothing else may
        slower.setattr(time, "perf_counter", itertools.count(0.0, 1000.0).__next__)
        rerun = run_eval(cfg, backend=again, progress=False)["results"]
    assert rerun["synthetic_arithmetic"]["wall_time_s"] != summary["results"]["synthetic_arithmetic"]["wall_time_s"]
    assert without_timings(rerun) == without_timings(summary["results"]) and again.asked == 0
    off = Crashing()
    run_eval(cfg.model_copy(update={"cache": "off"}), backend=off, progress=False)
    assert off.asked == 6


def test_cached_completions_of_rewritten_weights_are_not_served(tmp_path):
    model = tmp_path / "student"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"first weights")
    cfg = EvalConfig(
        model=str(model), tasks=["synthetic_arithmetic:k=2,n_test=6"], mode="finetune_cot", output=str(tmp_path / "ev")
    )
    run_eval(cfg, backend=Crashing(), progress=False)
    same = Crashing()
    run_eval(cfg, backend=same, progress=False)
    assert same.asked == 0
    (model / "model.safetensors").write_bytes(b"weights trained again")  # same folder, new student
    retrained = Crashing()
    run_eval(cfg, backend=retrained, progress=False)
    assert retrained.asked == 6
    in_fp32 = Crashing()  # another dtype computes other numbers
    run_eval(cfg.model_copy(update={"dtype": "float32"}), backend=in_fp32, progress=False)
    assert in_fp32.asked == 6
    shared = cfg.model_copy(update={"cache": str(tmp_path / "shared.sqlite")})  # a cache outside the folder
    for weights, asked in [(b"third", 6), (b"third", 0), (b"fourth", 6)]:
        if (model / "model.safetensors").read_bytes() != weights:
            (model / "model.safetensors").write_bytes(weights)
        backend = Crashing()
        run_eval(shared, backend=backend, progress=False)
        assert backend.asked == asked


def test_cached_completions_of_another_hub_commit_are_not_served(tmp_path):
    from types import SimpleNamespace

    cfg = EvalConfig(
        model="org/model", tasks=["synthetic_arithmetic:k=2,n_test=6"], mode="finetune_cot", output=str(tmp_path)
    )
    for commit, asked in [("aaa", 6), ("aaa", 0), ("bbb", 6)]:
        backend = Crashing()
        backend.model = SimpleNamespace(config=SimpleNamespace(_commit_hash=commit), dtype="torch.bfloat16")
        run_eval(cfg, backend=backend, progress=False)
        assert backend.asked == asked


def test_timings_are_left_out_of_comparisons_and_nothing_else():
    run = {"t": {"accuracy": 0.5, "wall_time_s": 0.01, "samples": [{"prediction": "3", "latency_s": 0.2}]}}
    slower = {"t": {"accuracy": 0.5, "wall_time_s": 0.0, "samples": [{"prediction": "3", "latency_s": 0.9}]}}
    assert (
        without_timings(run) == without_timings(slower) == {"t": {"accuracy": 0.5, "samples": [{"prediction": "3"}]}}
    )
    assert without_timings({**run, "created": 1.5, "seconds": 2}) == without_timings(run)
    assert without_timings(run) != without_timings({"t": {**run["t"], "accuracy": 0.6}})
