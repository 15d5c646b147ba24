"""Self-consistency vote, unbiased pass@k, and config loading with overrides."""

from __future__ import annotations

import itertools
import math

import pytest

from cotbridge.config import load_config
from cotbridge.errors import UserError
from cotbridge.evaluation.metrics import majority_vote, mean_and_stderr, pass_at_k
from cotbridge.evaluation.run import EvalConfig


def test_vote_drops_invalid_and_breaks_ties_by_first_seen():
    assert majority_vote([None, "3", "4", None, None]) == "3"  # None never wins, even as the most frequent
    assert majority_vote(["4", "3", "3", "4"]) == "4"
    assert majority_vote(["7", "5", "5"]) == "5"
    assert majority_vote([None, None]) is None
    assert majority_vote(["Paris", "paris ", "Rome"], key=lambda a: a.strip().lower()) == "Paris"


@pytest.mark.parametrize("n,c,k", [(8, 0, 1), (8, 3, 1), (8, 3, 2), (8, 3, 4), (5, 5, 3), (6, 1, 6)])
def test_pass_at_k_equals_brute_force_over_subsets(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_stderr():
    mean, se = mean_and_stderr([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))


def test_config_precedence_default_yaml_set_flag(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("k: 4\nlimit: 10\nmode: few_shot_cot\n")
    cfg = load_config(EvalConfig, path, ["limit=20", "chat=true"], {"mode": "zero_shot", "k": None})
    assert (cfg.k, cfg.limit, cfg.chat, cfg.mode, cfg.batch_size) == (4, 20, True, "zero_shot", 16)


def test_unknown_config_key_names_key_and_file(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("k: 4\nbatchsize: 8\n")
    with pytest.raises(UserError, match=r"eval\.yaml: unknown config key 'batchsize'"):
        load_config(EvalConfig, path)
    with pytest.raises(UserError, match="config key 'k'"):
        load_config(EvalConfig, None, ["k=many"])
    path.write_text("k: [unclosed\n")
    with pytest.raises(UserError, match=r"eval\.yaml:\d+: invalid YAML"):
        load_config(EvalConfig, path)


def test_a_run_directory_under_a_moved_default_names_the_set_that_resumes_it(tmp_path):
    """A run directory records every key, defaults included: when a newer cotbridge moves a default the user never
    gave, resuming is refused (the outputs may differ) with the --set that restores the recorded value; keys the user
    gave get no such hint."""
    import yaml

    from cotbridge.config import dump_config
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.finetune_cot.recipe import FinetuneCoT
    from cotbridge.run_record import RunRecord

    def check_config(run_dir, cfg, from_stage):
        RunRecord(run_dir).check(cfg, FinetuneCoT(cfg, progress=False).stages(), from_stage)

    recipe = tmp_path / "run.yaml"
    recipe.write_text("name: r\ntask: synthetic_coin_flip:k=4\nteacher: {backend: reference}\nstudent: {lr: 0.001}\n")
    recorded = yaml.safe_load(dump_config(load_config(RunConfig, recipe)))
    recorded["student"]["batch_size"] = 8  # what an older default wrote
    recorded["student"]["lr"] = 0.002  # a key the user gave, changed since
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(recorded))

    with pytest.raises(UserError) as e:
        check_config(tmp_path, load_config(RunConfig, recipe), None)
    message = str(e.value)
    assert "student.batch_size: 8 -> 'auto'" in message and "student.lr: 0.002 -> 0.001" in message
    assert message.endswith("keep the recorded values of changed defaults: --set student.batch_size=8")

    recorded["student"]["lr"] = 0.001
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(recorded))
    check_config(tmp_path, load_config(RunConfig, recipe, sets=["student.batch_size=8"]), None)  # resumes
    with pytest.raises(UserError):
        check_config(tmp_path, load_config(RunConfig, recipe), None)


def test_no_set_is_suggested_where_it_would_not_restore_the_record(tmp_path):
    """A moved default inside a section whose default is customised (lm_guided's writer.train: full fine-tuning,
    lr 1e-3, 10 epochs) gets no hint: `--set writer.train.batch_size=8` would build that section from its class's
    defaults and change five more keys. Nor does a recorded key the current schema no longer has (the CLI would
    reject it). A moved default in a section left at its class's plain default (rl) does get one."""
    import yaml

    from cotbridge.config import dump_config, restoring_sets
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig

    cfg = load_config(LMGuidedConfig)
    recorded = yaml.safe_load(dump_config(cfg))
    recorded["writer"]["train"]["batch_size"] = 8
    recorded["writer"]["retired_knob"] = 3
    current = yaml.safe_load(dump_config(cfg))
    assert restoring_sets(recorded, current, cfg) == []
    recorded["rl"]["batch_size"] = 4
    assert restoring_sets(recorded, current, cfg) == ["--set rl.batch_size=4"]
    assert load_config(LMGuidedConfig, sets=["rl.batch_size=4"]).rl.batch_size == 4  # and the CLI takes it
