"""run_record: the one owner of "have the settings changed?" for a run directory, and --from re-checking the stages
it keeps (issue #23: `--from eval` after a change to student training used to evaluate the old student)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cotbridge.config import StrictModel, load_config
from cotbridge.engine import Stage, run_recipe
from cotbridge.errors import UserError
from cotbridge.run_record import RunRecord, owning_stage, refuse_if_changed

ROOT = Path(__file__).resolve().parents[1]


class Toy(StrictModel):
    name: str = "toy"
    words: list[str] = ["a"]
    lr: float = 0.1
    limit: int = 3
    colour: str = "red"  # declared by no stage: counts as the first stage's


class ToyRecipe:
    def __init__(self, config: Toy, run_dir: Path):
        self.config, self.run_dir, self.calls = config, run_dir, []

    def _step(self, name: str) -> str:
        out = self.run_dir / name / "out.txt"
        if not out.exists():
            self.calls.append(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(name)
        return out.read_text()

    def stages(self) -> list[Stage]:
        d = self.run_dir
        return [
            Stage("data", lambda: self._step("data"), lambda: [d / "data"], settings=("words",)),
            Stage("train", lambda: self._step("train"), lambda: [d / "train"], settings=("lr",)),
            Stage("eval", lambda: self._step("eval"), lambda: [d / "eval"], settings=("limit",)),
            Stage("report", lambda: self._step("report"), lambda: [d / "report"], settings=("name",)),
        ]

    def summary(self, results):
        return results


def test_from_a_stage_after_the_changed_one_is_refused_and_nothing_is_removed(tmp_path):
    run_dir = tmp_path / "run"
    run_recipe(ToyRecipe(Toy(), run_dir))
    changed = ToyRecipe(Toy(lr=0.5), run_dir)
    with pytest.raises(UserError) as e:
        run_recipe(changed, from_stage="eval")
    msg = str(e.value)
    assert "--from eval keeps stage 'train'" in msg and "lr: 0.1 -> 0.5" in msg and "use --from train" in msg
    assert "\n" not in msg
    assert (run_dir / "eval" / "out.txt").exists()  # refused before --from removed anything
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["lr"] == 0.1  # the record still tells the truth

    with pytest.raises(
        UserError, match=r"other settings \(lr: 0.1 -> 0.5\): redo the stages they affect with --from train"
    ):
        run_recipe(changed)  # a plain resume names the stage to redo

    run_recipe(changed, from_stage="train")  # the changed stage and every later one are redone
    assert changed.calls == ["train", "eval", "report"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["lr"] == 0.5
    changed.calls.clear()
    run_recipe(changed)  # and the new record resumes cleanly
    assert changed.calls == []


def test_a_change_that_only_later_stages_read_is_redone_by_from(tmp_path):
    run_dir = tmp_path / "run"
    run_recipe(ToyRecipe(Toy(), run_dir))
    later = ToyRecipe(Toy(limit=5, name="renamed"), run_dir)
    run_recipe(later, from_stage="eval")
    assert later.calls == ["eval", "report"]


def test_an_undeclared_key_counts_as_the_first_stage(tmp_path):
    stages = ToyRecipe(Toy(), tmp_path).stages()
    assert owning_stage("colour", stages) == 0 and owning_stage("lr", stages) == 1
    run_recipe(ToyRecipe(Toy(), tmp_path / "run"))
    with pytest.raises(UserError, match="--from eval keeps stage 'data'"):
        run_recipe(ToyRecipe(Toy(colour="blue"), tmp_path / "run"), from_stage="eval")


def test_refuse_if_changed_names_the_holder_the_change_and_the_remedy():
    refuse_if_changed({"a": 1}, {"a": 1}, holder="h", remedy="r")  # the same: nothing to say
    with pytest.raises(UserError, match=r"^h \(a: 1 -> 2\); do this$"):
        refuse_if_changed({"a": 1}, {"a": 2}, holder="h", remedy="do this")
    with pytest.raises(UserError, match=r"^h \(no record of the settings that made them\); r$"):
        refuse_if_changed(None, {"a": 1}, holder="h", remedy="r")


# ---------------------------------------------------------------- each recipe: --from eval after a training change


def _recipe(kind: str, tmp_path: Path):
    if kind == "finetune_cot":
        from cotbridge.recipes.finetune_cot.config import RunConfig as cls
        from cotbridge.recipes.finetune_cot.recipe import FinetuneCoT as recipe

        path, training = ROOT / "examples" / "quickstart.yaml", "student.lr"
    elif kind == "instruct":
        from cotbridge.recipes.instruct.config import InstructConfig as cls
        from cotbridge.recipes.instruct.recipe import InstructionTuningCoT as recipe

        path, training = ROOT / "recipes" / "instruction_tuning_replay_offline.yaml", "student.lr"
    else:
        from cotbridge.recipes.lm_guided.config import LMGuidedConfig as cls
        from cotbridge.recipes.lm_guided.recipe import LMGuidedCoT as recipe

        path, training = ROOT / "recipes" / "lm_guided_cot_offline.yaml", "writer.train.lr"
    sets = [f"run_dir={tmp_path / 'run'}"]
    before = recipe(load_config(cls, path, sets), progress=False)
    after = recipe(load_config(cls, path, [*sets, f"{training}=0.123"]), progress=False)
    return before, after, training


@pytest.mark.parametrize("kind,trained_by", [("finetune_cot", "train"), ("instruct", "train"), ("lm_guided", "kd")])
def test_each_recipe_refuses_from_eval_after_its_student_training_changed(kind, trained_by, tmp_path):
    before, after, training = _recipe(kind, tmp_path)
    RunRecord(before.run_dir).write(before.config)
    (before.run_dir / "eval").mkdir()
    (before.run_dir / "eval" / "kept.json").write_text("{}")
    with pytest.raises(UserError) as e:
        run_recipe(after, from_stage="eval")
    assert f"--from eval keeps stage {trained_by!r}" in str(e.value) and training in str(e.value)
    assert (before.run_dir / "eval" / "kept.json").exists()
    RunRecord(after.run_dir).check(after.config, after.stages(), trained_by)  # redoing the training is accepted


@pytest.mark.parametrize("kind", ["finetune_cot", "instruct", "lm_guided"])
def test_a_run_moved_or_named_by_another_path_is_the_same_run(kind, tmp_path):
    before, after, training = _recipe(kind, tmp_path)
    record = RunRecord(before.run_dir)
    record.write(before.config)
    elsewhere = {"run_dir": "runs/moved"}  # where the run lives is not a setting of its outputs
    record.check(before.config.model_copy(update=elsewhere), before.stages())
    with pytest.raises(UserError) as e:  # a real change beside the move is still refused, and named alone
        record.check(after.config.model_copy(update=elsewhere), after.stages())
    changes = str(e.value).split("settings (", 1)[1].split(")", 1)[0]
    assert changes.startswith(f"{training}: ") and changes.endswith("-> 0.123") and "run_dir" not in changes


def test_a_unit_runs_once_and_is_read_back_from_its_marker(tmp_path):
    from cotbridge.engine import unit

    calls = []

    def make():
        calls.append(1)
        return {"steps": 3}

    marker = tmp_path / "student" / "done.json"
    assert unit(marker, make) == {"steps": 3} and calls == [1]
    assert unit(marker, make) == {"steps": 3} and calls == [1]  # complete: read back, not redone

    def writes_its_own_marker():
        (tmp_path / "data.jsonl").write_text('{"a": 1}\n')
        return tmp_path / "data.jsonl"

    assert unit(tmp_path / "data.jsonl", writes_its_own_marker, read=lambda p: p) == tmp_path / "data.jsonl"
    assert (tmp_path / "data.jsonl").read_text() == '{"a": 1}\n'  # its own marker is not overwritten

    def crashes():
        raise RuntimeError("killed mid-training")

    with pytest.raises(RuntimeError):
        unit(tmp_path / "other" / "done.json", crashes)
    assert not (tmp_path / "other" / "done.json").exists()  # an unfinished unit is redone on the next run
