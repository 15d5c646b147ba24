"""``--help`` a user can copy from: the quick start verbatim and runnable offline, human metavars instead of Python
types, a real ``--set`` example for each command, the settings of train and teach listed from their configs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cotbridge.cli import app
from cotbridge.config import load_config
from tests.conftest import REPO, SHARED_DATA

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
TYPE_NOISE = re.compile(
    r"<(?:str|int|float|bool|text|path|file|list|dict|tuple|datetime|uuid)\b[^>]*>"
    r"|list\[|Optional"
)


def help_text(*args: str, columns: int = 80) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)}, prog_name="cotbridge")
    assert res.exit_code == 0, res.output
    return res.output


def quickstart_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("cotbridge ")]


@pytest.mark.parametrize("columns", [80, 200])
def test_quickstart_renders_one_whole_command_per_line(columns):
    env = {**os.environ, "COLUMNS": str(columns)}
    out = subprocess.run([sys.executable, "-m", "cotbridge", "--help"], capture_output=True, text=True, env=env).stdout
    lines = quickstart_lines(out)
    assert len(lines) >= 4, out
    assert all(line.count("cotbridge ") <= 1 for line in out.splitlines()), out  # no two commands run together
    assert lines[0] == "cotbridge tasks"
    predictions = next(line for line in lines if "--predictions" in line)
    assert "--data-dir ../shared/data " in predictions
    assert "--text-field cot.generation.0 --gold-field target" in predictions
    assert any(line == "cotbridge run examples/quickstart.yaml" for line in lines)


def test_quickstart_commands_parse_and_name_files_that_exist():
    """Every quick-start line is accepted by the parser (options and arguments exist) and every file it names exists
    (from the repository root; ../shared only where this checkout has it)."""
    from cotbridge.jsonl import get_field, read_jsonl

    group = typer.main.get_command(app)
    for line in quickstart_lines(help_text()):
        argv = shlex.split(line)[1:]
        ctx = group.make_context("cotbridge", list(argv), resilient_parsing=False)
        sub = group.get_command(ctx, argv[0])  # type: ignore[attr-defined]
        sub.make_context(argv[0], argv[1:], parent=ctx)  # raises on an unknown option or a missing argument
        for token in argv:
            if "/" in token or token.endswith((".yaml", ".jsonl")):
                path = REPO / token
                if token.startswith("../shared") and not SHARED_DATA.is_dir():
                    continue
                assert path.exists(), f"{line}: {token} does not exist"
        if "--predictions" in argv:
            path = REPO / argv[argv.index("--predictions") + 1]
            if not path.exists():
                continue
            first = next(iter(read_jsonl(path)))
            for opt in ("--text-field", "--gold-field"):
                get_field(first, argv[argv.index(opt) + 1])  # raises if the record has no such field


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_python_types(command):
    for columns in (80, 200):
        text = help_text(*([command] if command else []), columns=columns)
        assert not TYPE_NOISE.search(text), TYPE_NOISE.search(text).group(0)  # type: ignore[union-attr]


def config_classes():
    from cotbridge.curate import CurateConfig
    from cotbridge.evaluation.run import EvalConfig
    from cotbridge.quality.score_file import ScoreConfig
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.instruct.config import InstructConfig
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig
    from cotbridge.released_traces import TracesConfig
    from cotbridge.server import ServeConfig
    from cotbridge.teach import TeachConfig
    from cotbridge.train.config import TrainConfig

    # command -> (config class, a config file it is run with, flags that fill required keys)
    return {
        "eval": (EvalConfig, None, {}),
        "teach": (TeachConfig, None, {}),
        "curate": (CurateConfig, None, {}),
        "train": (TrainConfig, None, {}),
        "traces": (TracesConfig, None, {}),
        "serve": (ServeConfig, None, {}),
        "score": (ScoreConfig, None, {"input": "in.jsonl", "output": "out.jsonl"}),
        "run": (RunConfig, REPO / "examples" / "quickstart.yaml", {}),
        "instruct": (InstructConfig, REPO / "recipes" / "instruction_tuning_replay_offline.yaml", {}),
        "lmguided": (LMGuidedConfig, REPO / "recipes" / "lm_guided_cot_offline.yaml", {}),
        "onpolicy": (OnPolicyRunConfig, REPO / "recipes" / "on_policy_offline.yaml", {}),
        "preflight": (OnPolicyRunConfig, REPO / "recipes" / "on_policy_offline.yaml", {}),
    }


def set_example(command: str) -> str:
    text = " ".join(help_text(command).split())
    match = re.search(r"--set KEY=VALUE .*?e\.g\. --set (.+?) \(repeatable\)", text)
    assert match, text
    (example,) = shlex.split(match.group(1))
    return example


def test_every_command_with_set_is_checked():
    with_set = [c for c in COMMANDS if "--set KEY=VALUE" in help_text(c)]
    assert sorted(with_set) == sorted(config_classes())


@pytest.mark.parametrize("command", sorted(config_classes()))
def test_set_example_is_a_real_key_of_the_commands_config(command):
    import yaml

    cls, path, flags = config_classes()[command]
    example = set_example(command)
    key, _, value = example.partition("=")
    cfg = load_config(cls, path, [example], flags)  # an unknown key is a UserError
    node = cfg.model_dump()
    for part in key.split("."):
        node = node[part]
    assert node == yaml.safe_load(value)
    assert example != "k=8" or command == "eval"


def test_train_help_lists_every_training_setting_with_its_default():
    from cotbridge.train.config import TrainConfig

    text = help_text("train", columns=200)
    settings = text[text.index("Settings") :]
    for name in TrainConfig.model_fields:
        assert re.search(rf"^\s+{name}=", settings, re.M), name
    for line in ("epochs=20", "lr=0.0003", "lora=true", "batch_size=auto", "max_length=512"):
        assert line in settings
    assert "Fine-tune-CoT's setting" in settings  # the comment beside the field in the config class


def test_teach_help_lists_dotted_teacher_keys():
    text = help_text("teach", columns=200)
    for key in ("teacher.backend=reference", "teacher.model=null", "teacher.options={}", "samples=1", "max_cost=null"):
        assert key in text


def test_recipe_from_help_lists_the_recipes_stages():
    from cotbridge.engine import RECIPES, stage_names

    recipes = (("run", "finetune_cot"), ("instruct", "instruct"), ("lmguided", "lm_guided"), ("onpolicy", "on_policy"))
    for command, recipe in recipes:
        cls, path, flags = config_classes()[command]
        stages = stage_names(RECIPES.get(recipe)(load_config(cls, path, None, flags)))
        text = " ".join(help_text(command).split())
        assert f"redo this stage and the later ones: {', '.join(stages)}" in text


def test_top_level_help_imports_no_command_module():
    code = (
        "import sys; from cotbridge.cli import main; sys.argv = ['cotbridge', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'pydantic') or "
        "m.startswith(('cotbridge.recipes', 'cotbridge.train', 'cotbridge.evaluation', 'cotbridge.teach'))]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("HEAVY []"), out


def test_run_until_stops_after_the_stage(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "run",
            "examples/quickstart.yaml",
            "--until",
            "teach",
            "--set",
            f"run_dir={tmp_path / 'run'}",
            "--set",
            "train_limit=4",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "COTBRIDGE_CACHE": str(tmp_path / "requests.sqlite")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "stopped after teach"
    assert (tmp_path / "run" / "teacher").is_dir() and not (tmp_path / "run" / "data").exists()


def test_unknown_until_stage_is_a_user_error(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "run",
            "examples/quickstart.yaml",
            "--until",
            "trian",
            "--set",
            f"run_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and "--until: unknown stage 'trian'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not Path(tmp_path / "run").exists()


# Commands whose options stand for config keys: their help is the key's comment, so it cannot drift from the config.
GENERATED = {"teach": "cotbridge.cli.teach", "curate": "cotbridge.cli.curate", "eval": "cotbridge.cli.eval_cmd"}


@pytest.mark.parametrize("command", sorted(GENERATED))
def test_every_option_is_a_config_key_that_defaults_to_the_config(command):
    import importlib

    from cotbridge.cli.help_format import field_comments, key_field, load_object

    module = importlib.import_module(GENERATED[command])
    cls = load_object(module.SETTINGS)
    click_cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    own = {p.name for p in click_cmd.params} - {"config", "set_", "help"} - set(getattr(module, "SCORING", ()))
    assert own == set(module.OPTIONS), own ^ set(module.OPTIONS)  # no option outside the config, none left out
    text = " ".join(help_text(command, columns=400).split())
    for param in click_cmd.params:
        if param.name not in module.OPTIONS:
            continue
        assert param.default is None, param.name  # left out, an option never overrides --config / --set
        holder, leaf = key_field(cls, module.OPTIONS[param.name])  # a KeyError if the key is not in the config
        comment = " ".join(field_comments(holder).get(leaf, "").split())
        assert comment and comment in text, (param.name, comment)
        assert f"(config: {module.OPTIONS[param.name]})" in text


def test_teach_help_names_every_registered_backend_and_mode():
    from cotbridge.backends import BACKENDS
    from cotbridge.teach.config import TEACH_MODES

    text = " ".join(help_text("teach", columns=400).split())
    assert "oracle" in BACKENDS.names()
    assert f"one of: {', '.join(BACKENDS.names())}" in text and f"one of: {', '.join(TEACH_MODES)}" in text


def test_teach_with_a_tag_prints_the_file_it_wrote(tmp_path):
    res = CliRunner().invoke(
        app,
        ["teach", "--task", "synthetic_coin_flip", "--limit", "3", "--run-dir", str(tmp_path), "--set", "tag=v2"],
        prog_name="cotbridge",
    )
    assert res.exit_code == 0, res.output
    printed = res.output.strip().splitlines()[-1].removeprefix("wrote ")
    assert printed.endswith("synthetic_coin_flip.v2.jsonl") and Path(printed).exists()


def test_curate_takes_its_settings_from_a_config_file(tmp_path):
    teach = ["teach", "--task", "synthetic_coin_flip", "--limit", "6", "--run-dir", str(tmp_path), "-D", "2"]
    assert CliRunner().invoke(app, teach).exit_code == 0
    cfg = tmp_path / "curate.yaml"
    cfg.write_text(
        f"records: {tmp_path / 'teacher' / 'synthetic_coin_flip.jsonl'}\noutput: {tmp_path / 'data'}\n"
        "decontaminate: false\nfilters: [has_output]\n"
    )
    res = CliRunner().invoke(app, ["curate", "--config", str(cfg), "--set", "dedupe=true"], prog_name="cotbridge")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data" / "train.jsonl").exists() and "of 12 records" in res.output
    import json

    from cotbridge.errors import UserError

    stats = json.loads((tmp_path / "data" / "curation.json").read_text())
    assert stats["filters"] == ["has_output"] and stats["dedupe"] is True  # the file's filters, --set's dedupe
    missing = CliRunner().invoke(app, ["curate", "--set", "dedupe=true"], prog_name="cotbridge")
    assert isinstance(missing.exception, UserError) and "needs RECORDS and --output" in str(missing.exception)


def test_eval_help_lists_every_prompt_mode_and_students_get_their_own_default_folders(tmp_path):
    from cotbridge.evaluation.run import EvalConfig
    from cotbridge.prompts.modes import PROMPT_MODES

    text = " ".join(help_text("eval", columns=400).split())
    assert "chat_cot" in PROMPT_MODES.names() and f"one of: {', '.join(PROMPT_MODES.names())}" in text
    a, b = tmp_path / "run_a" / "student", tmp_path / "run_b" / "student"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert EvalConfig(model=str(a)).output_dir() != EvalConfig(model=str(b)).output_dir()
