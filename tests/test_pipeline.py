"""cotbridge run: all stages on a tiny student, resumable, --from redoes only what it names."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml


def write_config(tmp_path, tiny_model_dir):
    cfg = {
        "name": "tiny",
        "run_dir": str(tmp_path / "run"),
        "task": "synthetic_coin_flip:k=2,n_test=8",
        "train_limit": 12,
        "teacher": {"backend": "reference", "options": {"error_rate": 0.3}},
        "student": {
            "model": str(tiny_model_dir),
            "lora": False,
            "max_steps": 2,
            "batch_size": 4,
            "save_strategy": "no",
        },
        "eval": {"limit": 8, "max_tokens": 8, "batch_size": 8},
        "methods": [
            {"name": "zero_shot_cot", "kind": "prompt"},
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "ftcot", "kind": "distill", "samples": 1},
            {"name": "ftcot_d2", "kind": "distill", "samples": 2},
        ],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "cotbridge", "run", *args], capture_output=True, text=True, timeout=900
    )


def test_run_all_stages_then_resume_and_redo_from_eval(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    done = run(str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "run"
    for method in ("zero_shot_cot", "vanilla", "ftcot", "ftcot_d2"):
        assert (root / "eval" / method / "results.json").exists()
    assert (root / "teacher" / "synthetic_coin_flip.D2.jsonl").read_text().count("\n") == 24
    curation = json.loads((root / "data" / "ftcot_d2" / "curation.json").read_text())
    assert (
        curation["records"] == 24 and 0 < curation["kept"] < 24
    )  # the reference teacher's wrong samples were dropped
    vanilla = [json.loads(x) for x in (root / "data" / "vanilla" / "train.jsonl").read_text().splitlines()]
    assert len(vanilla) == 12 and all(v["completion"] in (" yes", " no") for v in vanilla)
    assert json.loads((root / "students" / "ftcot" / "done.json").read_text())["global_step"] == 2
    report = (root / "report.md").read_text()
    assert "ftcot_d2" in report and (root / "report.tex").exists() and (root / "plots").is_dir()
    # Regression: the teach stage used to overwrite the run's config.yaml with its own TeachConfig.
    recorded = yaml.safe_load((root / "config.yaml").read_text())
    assert recorded["name"] == "tiny" and [m["name"] for m in recorded["methods"]][-1] == "ftcot_d2"
    assert "samples" not in recorded  # a TeachConfig key
    teach_cfg = yaml.safe_load((root / "teacher" / "synthetic_coin_flip.D2.config.yaml").read_text())
    assert teach_cfg["samples"] == 2 and teach_cfg["tag"] == "D2"  # the stage's own settings, in its own folder
    assert "train" in json.loads((root / "timings.json").read_text())  # stages under a second are resumes: untimed

    stamps = {
        p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")
    }
    again = run(str(config))
    assert again.returncode == 0
    changed = [
        p
        for p, t in stamps.items()
        if p.exists()
        and p.stat().st_mtime_ns != t
        and "report" not in p.name
        and p.name not in ("results_table.json", "timings.json")
    ]
    assert changed == []  # nothing was taught, trained or evaluated twice

    redo = run(str(config), "--from", "eval")
    assert redo.returncode == 0
    assert (root / "students" / "ftcot" / "model.safetensors").stat().st_mtime_ns == stamps[
        root / "students" / "ftcot" / "model.safetensors"
    ]
    assert (root / "eval" / "ftcot" / "results.json").stat().st_mtime_ns != stamps[
        root / "eval" / "ftcot" / "results.json"
    ]

    # Issue #23: a changed training setting with --from eval used to evaluate the student trained under the old one
    # and record the new one in config.yaml. Now refused before anything is removed; --from train redoes it.
    student = root / "students" / "ftcot" / "model.safetensors"
    refused = run(str(config), "--set", "student.lr=0.5", "--from", "eval")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--from eval keeps stage 'train'" in refused.stderr and "student.lr" in refused.stderr
    assert (root / "eval" / "ftcot" / "results.json").exists() and student.stat().st_mtime_ns == stamps[student]
    assert yaml.safe_load((root / "config.yaml").read_text())["student"]["lr"] != 0.5
    redone = run(str(config), "--set", "student.lr=0.5", "--from", "train")
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert student.stat().st_mtime_ns != stamps[student]
    assert yaml.safe_load((root / "config.yaml").read_text())["student"]["lr"] == 0.5


def test_unknown_stage_and_bad_method_are_user_errors(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    bad = run(str(config), "--from", "teaching")
    assert bad.returncode == 2 and "unknown stage 'teaching'" in bad.stderr
    bad = run(str(config), "--set", "methods=[{name: a, kind: distill, format: fancy}]")
    assert bad.returncode == 2 and "unknown student format 'fancy'" in bad.stderr


def test_quickstart_and_finetune_cot_recipes_are_valid_run_configs():
    """The README's first command and the paper recipes must at least parse (a typo would only show up at run time)."""
    from pathlib import Path

    from cotbridge.config import load_config
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.finetune_cot.recipe import FinetuneCoT

    root = Path(__file__).resolve().parents[1]
    paths = [root / "examples" / "quickstart.yaml", *sorted((root / "recipes").glob("finetune_cot_*.yaml"))]
    assert len(paths) >= 4
    for path in paths:
        FinetuneCoT(load_config(RunConfig, path), progress=False)  # also checks formats and unique method names
    quick = load_config(RunConfig, paths[0])
    kinds = {(m.kind, m.samples if m.kind == "distill" else None) for m in quick.methods}
    assert (
        quick.teacher.backend == "reference" and quick.student.model == "smollm2-135m-instruct" and quick.student.lora
    )
    assert {("prompt", None), ("vanilla", None), ("distill", 1)} <= kinds and any(
        k == "distill" and d > 1 for k, d in kinds
    )
