"""`cotbridge view`: the data the page embeds (every record of a real run, counts equal to results.json and
report.md), escaping of hostile text, the other inputs (eval folder, teacher records, scored items), flips of two
runs, and bad input as one line with exit status 2. The page in a real browser: tests/test_view_browser.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cotbridge.jsonl import read_json, read_jsonl
from cotbridge.view import write_view
from cotbridge.view.collect import collect, prompt_text
from cotbridge.view.model import page_data
from tests.view_runs import PAYLOAD, TASK, synthesize_run


def embedded(page: Path) -> dict:
    """The JSON the page embeds, read back as the browser's JSON.parse would."""
    text = page.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="cb-data">(.*?)</script>', text, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cotbridge", "view", *args], capture_output=True, text=True, timeout=300
    )


# -- a real run (the tiny model through every stage): the page `cotbridge run` writes at its end ----------------------
@pytest.fixture(scope="module")
def real_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("view-real")
    cfg = {
        "name": "tiny",
        "run_dir": str(tmp / "run"),
        "task": "synthetic_coin_flip:k=2,n_test=6",
        "train_limit": 6,
        "teacher": {"backend": "reference", "options": {"error_rate": 0.3}},
        "curate": {"filters": ["has_output", "correct"], "dedupe": True},
        "student": {
            "model": str(tiny_model_dir),
            "lora": False,
            "max_steps": 1,
            "batch_size": 4,
            "save_strategy": "no",
        },
        "eval": {"limit": 6, "max_tokens": 8, "batch_size": 8},
        "methods": [
            {"name": "zero_shot_cot", "kind": "prompt"},
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "ftcot_d2", "kind": "distill", "samples": 2},
        ],
    }
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", "run", str(tmp / "run.yaml")], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "run", done


def test_run_writes_its_page_with_every_eval_record_and_the_reported_counts(real_run):
    root, done = real_run
    page = root / "view.html"
    assert page.is_file() and f"view: {page}" in done.stdout  # written by `cotbridge run` at its end
    data = embedded(page)
    cols = [c["method"] for c in data["columns"]]
    assert cols == ["zero_shot_cot", "vanilla", "ftcot_d2"]  # the config's order
    rows = {r["k"]: r for r in data["rows"]}
    report = (root / "report.md").read_text()
    for i, method in enumerate(cols):
        records = list(read_jsonl(root / "eval" / method / f"{TASK}.jsonl"))
        results = read_json(root / "eval" / method / "results.json")["results"][TASK]
        assert len(records) == results["n"] == 6
        for rec in records:
            out = rows[f"{TASK}:test:{rec['id']}"]["o"][i]
            assert out["c"] == rec["correct"] and out.get("p") == rec["prediction"]
            assert [s.get("o", "") for s in out["S"]] == [s["output"] for s in rec["samples"]]
            assert rows[f"{TASK}:test:{rec['id']}"]["q"] == rec["question"]
            # the prompt: its column's template around the question, as given to the model
            prefix, suffix = data["columns"][i]["prompts"][out["pt"]]
            assert prefix + rec["question"] + suffix == prompt_text(rec["prompt"]) and "pr" not in out
        assert len(data["columns"][i]["prompts"]) == 1  # one template for all six questions
        correct = sum(bool(r["o"][i] and r["o"][i]["c"]) for r in data["rows"])
        assert correct == round(results["accuracy"] * results["n"])
        cell = re.search(rf"^\| {method} \| ([\d.]+) ±", report, re.M)
        assert cell and float(cell.group(1)) == pytest.approx(100 * correct / 6, abs=0.051)
    # every teacher sample is there, with a verdict that adds up to curation.json's counts
    teacher = list(read_jsonl(root / "teacher" / f"{TASK}.D2.jsonl"))
    shown = [t for r in data["rows"] for t in r.get("T", [])]
    assert len(shown) == len(teacher) == 12
    stats = read_json(root / "data" / "ftcot_d2" / "curation.json")
    assert stats["dropped"]  # the reference teacher's wrong samples (error_rate 0.3): some verdicts say why
    verdicts = [t["v"]["ftcot_d2"] for t in shown]
    assert verdicts.count("kept") == stats["kept"]
    for reason, n in stats["dropped"].items():
        assert verdicts.count(reason) == n
    assert "the per-question records disagree" not in page.read_text()


def test_view_command_rewrites_the_page_and_names_it(real_run, tmp_path):
    root, _ = real_run
    out = tmp_path / "page.html"
    done = cli(str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and embedded(out)["rows"]


# -- escaping --------------------------------------------------------------------------------------------------------
def test_hostile_text_stays_text(tmp_path):
    root = tmp_path / "run"
    synthesize_run(root, 12, payload_at=3, name=PAYLOAD, report=True)
    page = write_view([root])
    text = page.read_text(encoding="utf-8")
    assert text.count("<script") == 2  # the data block and the page's own script: nothing injected
    assert "<img src=x" not in text and "alert(1)</script>" not in text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the config's name, escaped in the summary
    data = embedded(page)  # and the JSON still holds the exact text
    row = next(r for r in data["rows"] if r["id"] == "test-3")
    assert row["q"].endswith(PAYLOAD) and all(PAYLOAD in o["S"][0]["o"] for o in row["o"])
    assert any(t["r"].endswith(PAYLOAD) for r in data["rows"] for t in r.get("T", []))
    js = (Path(__file__).parents[1] / "src/cotbridge/view/view.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


# -- two runs side by side -------------------------------------------------------------------------------------------
def test_side_by_side_counts_the_questions_that_flipped(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = synthesize_run(a, 60, seed=0, report=False)
    rb = synthesize_run(b, 60, seed=1, accuracy={"finetune_cot": 0.4}, report=False)
    page = write_view([a, b])
    assert page == a / "view-vs-b.html"
    data = embedded(page)
    assert data["compare"] and [p["method"] for p in data["pairs"]] == list(ra["right"])
    for p in data["pairs"]:
        m = p["method"]
        assert p["fixed"] == len(rb["right"][m] - ra["right"][m])
        assert p["broken"] == len(ra["right"][m] - rb["right"][m])
        assert data["columns"][p["a"]]["run"] == 0 and data["columns"][p["b"]]["run"] == 1
    text = page.read_text()
    fixed = sum(len(rb["right"][m] - ra["right"][m]) for m in ra["right"])
    assert f'<span class="fixed">{fixed} fixed</span>' in text  # at the top, without JavaScript


def test_two_eval_folders_pair_their_single_methods(tmp_path):
    synthesize_run(tmp_path / "a", 10, seed=0, methods=("finetune_cot",), report=False)
    synthesize_run(tmp_path / "b", 10, seed=3, methods=("finetune_cot_diverse",), report=False)
    data = page_data(
        [collect(tmp_path / "a" / "eval" / "finetune_cot"), collect(tmp_path / "b" / "eval" / "finetune_cot_diverse")]
    )
    assert [c["label"] for c in data["columns"]] == ["A · finetune_cot", "B · finetune_cot_diverse"]
    assert data["pairs"][0]["method"] == "finetune_cot / finetune_cot_diverse" and data["pairs"][0]["n"] == 10


# -- other inputs ----------------------------------------------------------------------------------------------------
def test_eval_folder_teacher_records_and_scored_items(tmp_path):
    root = tmp_path / "run"
    synthesize_run(root, 8, report=False)
    ev = collect(root / "eval" / "vanilla")  # a `cotbridge eval` output folder
    assert ev["kind"] == "eval" and ev["methods"] == ["vanilla"] and len(ev["questions"]) == 8

    predictions = tmp_path / "predictions"  # `cotbridge eval --predictions`: the scored text sits on the record
    predictions.mkdir()
    (predictions / "results.json").write_text(json.dumps({"task": TASK, "results": {}}))
    scored_line = {"line": 1, "id": "7", "gold": "yes", "output": "so yes", "samples": [{"prediction": "yes"}]}
    (predictions / f"{TASK}.jsonl").write_text(json.dumps({**scored_line, "prediction": "yes", "correct": True}))
    (row,) = embedded(write_view([predictions]))["rows"]
    assert row["o"][0]["S"][0]["o"] == "so yes" and row["o"][0]["c"] is True

    traces = tmp_path / "traces.jsonl"  # a `cotbridge traces` import: thinking kept apart from the response
    rec = {
        "key": "0#0", "task": "math500", "split": "train", "example_id": "0", "sample": 0, "question": "1+1?",
        "gold": "2", "rationale": "The answer is 2.", "thinking": "one plus one " * 200, "thinking_complete": True,
        "prediction": "2", "correct": True, "finish_reason": {"rationale": "stop", "answer": None},
    }  # fmt: skip
    traces.write_text(json.dumps(rec) + "\n")
    page = write_view([traces])
    assert page == tmp_path / "traces.view.html"
    (row,) = embedded(page)["rows"]
    assert row["T"][0]["th"].startswith("one plus one") and row["T"][0]["r"] == "The answer is 2." and row["o"] == []

    scored = tmp_path / "scored.jsonl"  # a `cotbridge score` output
    scored.write_text(
        json.dumps(
            {"question": "q?", "rationale": "because", "scores": {"flesch": {"ease": {"score": 0.5, "raw": 60}}}}
        )
        + "\n"
    )
    (tmp_path / "scored.summary.json").write_text(json.dumps({"means": {"flesch/ease": {"mean": 0.5, "n": 1}}}))
    page = write_view([scored])
    (row,) = embedded(page)["rows"]
    assert row["T"][0]["sc"] == {"flesch/ease": 0.5} and "flesch/ease" in page.read_text()


def test_eval_outputs_with_a_think_block_fold_it_apart(tmp_path):
    root = tmp_path / "run"
    synthesize_run(root, 3, methods=("finetune_cot",), report=False)
    f = root / "eval" / "finetune_cot" / f"{TASK}.jsonl"
    recs = list(read_jsonl(f))
    recs[0]["samples"][0]["output"] = "<think>let me see</think>The answer is yes."
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = embedded(write_view([root]))["rows"][0]["o"][0]["S"][0]
    assert out["th"] == "let me see" and out["o"] == "The answer is yes."


def test_lm_guided_and_instruct_layouts(tmp_path):
    """LM-guided runs keep metrics in eval/<row>/<task>.metrics.json and score rationales (scores/<task>.jsonl);
    instruct runs keep eval/<row>/<task>.json cells and eval/test_sets.json."""
    made = synthesize_run(tmp_path / "lmg", 6, methods=("cot", "guided"), report=False)
    root = tmp_path / "lmg"
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    cfg.pop("methods")
    cfg.update(
        {"large": {"model": "big"}, "eval": {"split": "validation", "rows": [{"name": "guided"}, {"name": "cot"}]}}
    )
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    items = []
    for row in ("cot", "guided"):
        d = root / "eval" / row
        (d / f"{TASK}.metrics.json").write_text(json.dumps(read_json(d / "results.json")["results"][TASK]))
        (d / "results.json").unlink()
        scores = [{"grounding": {"overlap": {"score": i / 10, "raw": None}}} for i in range(6)]
        items += [
            {"key": f"{row}/test-{i}#0", "row": row, "example_id": f"test-{i}", "sample": 0, "scores": scores[i]}
            for i in range(6)
        ]
    lmg_curation = {TASK: {"records": 4, "kept": 3, "dropped": {"answer_f1": 1}, "filters": ["answer_f1"]}}
    (root / "data" / "curation.json").write_text(json.dumps(lmg_curation))
    (root / "scores").mkdir()
    (root / "scores" / f"{TASK}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    data = embedded(write_view([root]))
    assert [c["method"] for c in data["columns"]] == ["guided", "cot"]  # eval.rows' order
    rows = {r["id"]: r for r in data["rows"] if any(r["o"])}
    assert rows["test-4"]["o"][0]["S"][0]["sc"] == {"grounding/overlap": 0.4}
    assert rows["test-4"]["k"] == f"{TASK}:validation:test-4"  # the split from config.yaml when no results.json
    assert sum(r["o"][1]["c"] for r in rows.values()) == len(made["right"]["cot"])
    text = (root / "view.html").read_text()
    assert "disagree with the reported metrics" not in text and f"<td>data/{TASK}</td>" in text

    inst = tmp_path / "inst"
    synthesize_run(inst, 5, methods=("base", "gsm8k<-gpt"), report=False)
    (inst / "eval" / "test_sets.json").write_text(json.dumps({TASK: {"split": "dev", "n": 5}}))
    for row in ("base", "gsm8k<-gpt"):
        d = inst / "eval" / row
        cell = {"row": row, "task": TASK, "ids": [], "metrics": read_json(d / "results.json")["results"][TASK]}
        (d / f"{TASK}.json").write_text(json.dumps(cell))
        (d / "results.json").unlink()
    (inst / "matrix.md").write_text("# matrix\n\n| row | x |\n|---|---|\n| gsm8k<-gpt | **50.0** |\n")
    page = write_view([inst])
    data = embedded(page)
    assert {c["method"] for c in data["columns"]} == {"base", "gsm8k<-gpt"}
    assert all(r["s"] == "dev" for r in data["rows"] if any(r["o"]))
    text = page.read_text()
    assert "<td>gsm8k&lt;-gpt</td>" in text and "<strong>50.0</strong>" in text  # matrix.md, escaped
    assert "disagree with the reported metrics" not in text


# -- bad input: one line, exit 2 -------------------------------------------------------------------------------------
def test_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_eval = tmp_path / "noeval"  # configured, nothing written yet
    no_eval.mkdir()
    (no_eval / "config.yaml").write_text("name: x\n")
    (no_eval / "eval").mkdir()
    corrupt = tmp_path / "corrupt"
    synthesize_run(corrupt, 4, report=False)
    f = corrupt / "eval" / "vanilla" / f"{TASK}.jsonl"
    lines = f.read_text().splitlines()
    lines[2] = lines[2][:40]
    f.write_text("\n".join(lines) + "\n")
    cases = {
        str(empty): "not a run directory",
        str(tmp_path / "missing"): "no such file or directory",
        str(no_eval): "no eval results",
        str(corrupt): f"{f}:3: invalid JSON",
    }
    for path, message in cases.items():
        done = cli(path)
        assert done.returncode == 2, (path, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (empty / "view.html").exists() and not (corrupt / "view.html").exists()
    done = cli(str(empty), str(empty), str(empty))
    assert done.returncode == 2 and "two to compare" in done.stderr


def test_a_run_not_yet_evaluated_shows_its_teacher_samples_and_curation(tmp_path):
    run = tmp_path / "training"
    made = synthesize_run(run, 4, report=False)
    shutil.rmtree(run / "eval")  # the students are still training
    done = cli(str(run))
    assert done.returncode == 0, done.stderr
    data = embedded(run / "view.html")
    assert data["columns"] == [] and all(not r["o"] for r in data["rows"])
    teacher_ids = {r["example_id"] for recs in made["teacher"].values() for r in recs}
    assert {r["id"] for r in data["rows"] if r.get("T")} == teacher_ids
    text = (run / "view.html").read_text()
    assert "No evaluation results yet" in text and 'id="curation"' in text


def test_the_run_hook_only_warns_when_the_page_cannot_be_written(tmp_path, capsys):
    from cotbridge.cli.view import write_beside

    write_beside(tmp_path / "nothing-here")
    err = capsys.readouterr().err
    assert err.startswith("warning: could not write") and err.count("\n") == 1
