"""``--from STAGE`` loses nothing when the redo fails: the outputs it would replace are set aside and put back (with
the recorded config) unless STAGE runs through; a first run that made nothing does not pin its settings; an
impossible --from / --until range is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cotbridge.engine import ASIDE, Stage, run_recipe
from cotbridge.errors import UserError
from cotbridge.run_record import short
from tests.test_architecture import ToyConfig, ToyRecipe


class Failing(ToyRecipe):
    """The toy recipe whose stage ``fail_at`` writes part of its output, then fails (a bad option, a network fault)."""

    fail_at: str | None = None

    def stages(self) -> list[Stage]:
        def failing(stage: Stage) -> Stage:
            def run():
                if stage.name == self.fail_at:
                    out = self.run_dir / stage.name / "partial.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text("half")
                    raise UserError("teacher.options.bogus: unknown option")
                return stage.run()

            return Stage(stage.name, run, stage.outputs)

        return [failing(s) for s in super().stages()]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_failed_redo_puts_back_the_outputs_and_the_recorded_config(tmp_path):
    run = tmp_path / "run"
    recipe = Failing(ToyConfig(words=["x"]), run)
    run_recipe(recipe)
    before = snapshot(run)
    assert {"first/out.txt", "second/out.txt", "third/out.txt", "config.yaml"} <= set(before)

    changed = Failing(ToyConfig(words=["x", "new"]), run)  # "words" is the first stage's setting
    changed.fail_at = "first"
    with pytest.raises(UserError, match="bogus"):
        run_recipe(changed, from_stage="first")
    after = snapshot(run)
    failed = [k for k in after if k.startswith(".redo-failed-")]
    assert {k: v for k, v in after.items() if k not in failed} == before  # every output and the old config back
    assert not (run / ASIDE).exists()
    assert [k for k in failed if k.endswith("partial.txt")]  # what the failed stage wrote: kept apart, not mixed in
    with pytest.raises(UserError, match="made with other settings"):  # the old record is the one in force
        run_recipe(Failing(ToyConfig(words=["x", "new"]), run))

    changed.fail_at = "second"  # once the redone stage runs through, a later failure keeps its new output
    with pytest.raises(UserError, match="bogus"):
        run_recipe(changed, from_stage="first")
    assert (run / "first" / "out.txt").read_text() == "x new" and not (run / "third").exists()
    assert not (run / ASIDE).exists()

    changed.fail_at = None  # the option fixed: the rest is made
    changed.calls.clear()
    assert run_recipe(changed) == {"joined": "x new|2|3"}
    assert changed.calls == ["second", "third"]
    assert yaml.safe_load((run / "config.yaml").read_text())["words"] == ["x", "new"]


def test_interrupted_redo_leftovers_are_not_overwritten(tmp_path, caplog):
    run = tmp_path / "run"
    recipe = ToyRecipe(ToyConfig(), run)
    run_recipe(recipe)
    (run / ASIDE / "outputs" / "second").mkdir(parents=True)  # a redo killed with SIGKILL left these
    with pytest.raises(UserError, match=r"\.redo-aside holds the outputs a previous --from set aside"):
        run_recipe(recipe, from_stage="second")
    assert (run / "second" / "out.txt").exists()
    run_recipe(recipe)  # a plain rerun goes on (it finishes the redo), saying the leftovers are there
    assert "outputs an interrupted --from set aside" in caplog.text and (run / ASIDE).exists()


def test_until_before_from_is_refused_before_anything_runs(tmp_path):
    recipe = ToyRecipe(ToyConfig(), tmp_path / "run")
    with pytest.raises(UserError, match="--until first comes before --from third: nothing would run"):
        run_recipe(recipe, from_stage="third", until="first")
    assert not (tmp_path / "run").exists()


def test_a_first_run_that_made_nothing_does_not_pin_its_settings(tmp_path):
    run = tmp_path / "run"
    broken = Failing(ToyConfig(words=["x"]), run)
    broken.fail_at = "first"
    with pytest.raises(UserError):
        run_recipe(broken)
    (run / "first" / "partial.txt").unlink()  # (the toy's partial output: a real stage writes its marker last)
    (run / "first").rmdir()
    assert (run / "config.yaml").exists()
    fixed = ToyRecipe(ToyConfig(words=["y"]), run)  # another setting: nothing was made under the old one
    assert run_recipe(fixed)["joined"].startswith("y|")
    # once outputs exist, a changed setting is refused as before
    with pytest.raises(UserError, match="made with other settings"):
        run_recipe(ToyRecipe(ToyConfig(words=["z"]), run))


def test_long_changed_values_are_shortened_in_the_message():
    assert short(["a" * 10] * 2) == repr(["a" * 10] * 2)
    long = short([{"backend": "openai", "model": f"m{i}"} for i in range(40)])
    assert len(long) < 80 and long.endswith("chars)")


class Nested(ToyRecipe):
    """Two stages declaring a folder and a file inside it (an earlier stage the inner one): each moved once."""

    def stages(self) -> list[Stage]:
        shared = self.run_dir / "shared"

        def write(name: str, text: str) -> str:
            if self.fail_at == name:
                raise UserError("network down")
            (shared / name).mkdir(parents=True, exist_ok=True)
            (shared / name / "out.txt").write_text(text)
            return text

        return [
            Stage("first", lambda: write("first", " ".join(self.config.words)), lambda: [shared / "first"]),
            Stage("second", lambda: write("second", "2"), lambda: [shared]),
        ]

    fail_at: str | None = None

    def summary(self, results):
        return results


def test_nested_outputs_are_set_aside_once_and_put_back(tmp_path):
    run = tmp_path / "run"
    recipe = Nested(ToyConfig(words=["x"]), run)
    run_recipe(recipe)
    before = snapshot(run)
    recipe.fail_at = "first"
    with pytest.raises(UserError, match="network down"):
        run_recipe(recipe, from_stage="first")
    assert snapshot(run) == before and not (run / ASIDE).exists()


def test_a_failure_while_dropping_the_old_outputs_keeps_the_new_ones(tmp_path, monkeypatch):
    import cotbridge.engine as engine

    run = tmp_path / "run"
    recipe = ToyRecipe(ToyConfig(words=["x"]), run)
    run_recipe(recipe)
    changed = ToyRecipe(ToyConfig(words=["y"]), run)

    def interrupted(self):
        raise KeyboardInterrupt  # Ctrl-C while a large old student is deleted

    monkeypatch.setattr(engine.OutputsAside, "drop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(changed, from_stage="first")
    assert (run / "first" / "out.txt").read_text() == "y"  # the redone stage's output, not moved away
    assert yaml.safe_load((run / "config.yaml").read_text())["words"] == ["y"]
    assert not list(run.glob(".redo-failed-*"))


def test_fine_tune_cot_redoes_teacher_records_with_their_fingerprints(tmp_path):
    """The records and the fingerprint that says what made them are set aside and put back together: the records
    alone, back beside a fingerprint of the failed attempt's settings, were refused as made with other settings."""
    from cotbridge.config import load_config
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.finetune_cot.recipe import FinetuneCoT
    from tests.conftest import REPO

    cfg = load_config(RunConfig, REPO / "examples" / "quickstart.yaml", [f"run_dir={tmp_path}"])
    teach = FinetuneCoT(cfg, progress=False).stages()[0]
    names = {p.name for p in teach.outputs()}
    for d in ("D1", "D3"):
        assert {f"synthetic_coin_flip.{d}.{s}" for s in ("jsonl", "fingerprint.json", "config.yaml")} <= names
