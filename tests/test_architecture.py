"""The tree's structure: every module imports on its own, every extraction pipeline is registered without importing a
method, and the stage engine owns the run directory of any recipe."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import cotbridge
from cotbridge.config import StrictModel
from cotbridge.engine import Stage, run_recipe
from cotbridge.errors import UserError

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(cotbridge.__path__, "cotbridge.") if m.name != "cotbridge.__main__"
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked clean child")
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """An import cycle hidden by import order shows up when a module is imported first. One fresh interpreter
    pre-loads the heavy third-party packages, then forks a child per module, in which that module is the first
    cotbridge module imported."""
    script = r"""
import os, sys, traceback
import torch, transformers  # noqa: F401  (shared by every child; not cotbridge)
assert not any(m == "cotbridge" or m.startswith("cotbridge.") for m in sys.modules)
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        failed.append(name)
print("FAILED:" + ",".join(failed))
"""
    assert len(MODULES) > 80
    res = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "FAILED:", res.stderr[-3000:]


def test_guided_answer_pipeline_is_registered_without_importing_lm_guided():
    """Regression: ``guided_answer`` existed only once the LM-guided module had been imported, so
    ``cotbridge eval --pipeline guided_answer`` called it unknown."""
    code = (
        "import sys; from cotbridge.answers.extract import PIPELINES; PIPELINES.get('guided_answer'); "
        "print(any(m.startswith('cotbridge.recipes') for m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_eval_predictions_with_the_guided_answer_pipeline(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        '{"output": "The answer is: Cork\\nmore text", "gold": "Cork"}\n{"output": "A: Dublin", "gold": "Cork"}\n',
        encoding="utf-8",
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "eval",
            "--task",
            "hotpotqa",
            "--predictions",
            str(preds),
            "--gold-field",
            "gold",
            "--pipeline",
            "guided_answer",
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [yaml.safe_load(x) for x in (tmp_path / "out" / "hotpotqa.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == ["Cork", "Dublin"]
    assert [r["correct"] for r in rows] == [True, False]


# ---------------------------------------------------------------- the stage engine, with a toy recipe


class ToyConfig(StrictModel):
    name: str = "toy"
    words: list[str] = ["a", "b"]


class ToyRecipe:
    """Three stages that each write a file and count how often they did real work."""

    def __init__(self, config: ToyConfig, run_dir: Path):
        self.config, self.run_dir = config, run_dir
        self.calls: list[str] = []

    def _step(self, name: str, text: str) -> str:
        out = self.run_dir / name / "out.txt"
        if not out.exists():
            self.calls.append(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        return out.read_text()

    def stages(self) -> list[Stage]:
        return [
            Stage("first", lambda: self._step("first", " ".join(self.config.words)), lambda: [self.run_dir / "first"]),
            Stage("second", lambda: self._step("second", "2"), lambda: [self.run_dir / "second"]),
            Stage("third", lambda: self._step("third", "3"), lambda: [self.run_dir / "third"]),
        ]

    def summary(self, results):
        return {"joined": "|".join(results[s] for s in ("first", "second", "third"))}


def test_engine_runs_resumes_redoes_from_a_stage_and_records_the_recipe_config(tmp_path):
    recipe = ToyRecipe(ToyConfig(words=["x", "y"]), tmp_path / "run")
    assert run_recipe(recipe) == {"joined": "x y|2|3"}
    assert recipe.calls == ["first", "second", "third"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"name": "toy", "words": ["x", "y"]}

    recipe.calls.clear()
    run_recipe(recipe)
    assert recipe.calls == []  # resumed: every stage found its output

    run_recipe(recipe, from_stage="second")
    assert recipe.calls == ["second", "third"]  # --from removed second's and third's outputs only

    recipe.calls.clear()
    (tmp_path / "run" / "third").rename(tmp_path / "gone")
    assert run_recipe(recipe, until="second") == {"stopped_after": "second"}
    assert recipe.calls == [] and not (tmp_path / "run" / "third").exists()


def test_engine_rejects_unknown_stage_names_before_running_anything(tmp_path):
    recipe = ToyRecipe(ToyConfig(), tmp_path / "run")
    with pytest.raises(UserError, match=r"--from: unknown stage 'secnd' \(stages: first, second, third\)"):
        run_recipe(recipe, from_stage="secnd")
    with pytest.raises(UserError, match="--until: unknown stage"):
        run_recipe(recipe, until="fourth")
    assert not (tmp_path / "run").exists()
