"""Bad input the command line used to ignore or answer with a traceback or click's usage block: each now gets one
line on stderr naming what is wrong and exit status 2 (--set values, unknown options, $COTBRIDGE_* values, --data-dir,
config files with a key given twice or nothing in them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cotbridge.cli.app import main
from cotbridge.config import StrictModel, load_config, read_yaml
from cotbridge.errors import UserError


class Settings(StrictModel):
    k: dict = {}


def run_main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """``cotbridge ARGV`` through the entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cotbridge", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return stop.value.code if isinstance(stop.value.code, int) else 1, out.out, out.err


def one_line(err: str) -> str:
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    return err.strip()


@pytest.mark.parametrize(
    "value,problem",
    [
        ("[1", "expected ',' or ']'"),
        ("*a", "found undefined alias 'a'"),
        ("!!python/object:x", "could not determine a constructor"),
    ],
)
def test_a_set_value_that_is_not_yaml_is_one_line(monkeypatch, capsys, value, problem):
    code, _, err = run_main(monkeypatch, capsys, "eval", "--set", f"k={value}")
    line = one_line(err)
    assert code == 2 and line.startswith(f"error: --set 'k={value}': not a YAML value (") and problem in line, line


@pytest.mark.parametrize(
    "argv,start",
    [
        (["eval", "--k", "abc"], "cotbridge eval: invalid value for '--k': "),
        # click words it "no such option: --x" or (older) "no such option '--x'"
        (["teach", "--max-tokens", "64"], "cotbridge teach: no such option"),
        (["eval", "--chat=3"], "cotbridge eval: option '--chat' does not take a value"),  # click gives no context
        (["evl"], "cotbridge: no such command 'evl'. Did you mean 'eval'?"),  # click's suggestion kept
        (["--bogus"], "cotbridge: no such option"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_commands_help(monkeypatch, capsys, argv, start):
    code, _, err = run_main(monkeypatch, capsys, *argv)
    line = one_line(err)
    command = start.split(":")[0]
    # the program's name as click finds it ("cotbridge", "python -m cotbridge"; under pytest, pytest's) comes first
    assert code == 2 and start in line and line.endswith(f"{command} --help)") and "Usage" not in line, line
    assert next(a for a in argv if a.startswith("-") or a == "evl").split("=")[0] in line  # what was wrong, named
    code, out, err = run_main(
        monkeypatch, capsys, *command.split()[1:], "--help"
    )  # the help it points to is as it was
    assert code == 0 and out.startswith("Usage: ") and "[OPTIONS]" in out.splitlines()[0] and not err
    code, _, err = run_main(monkeypatch, capsys)  # no command at all: the whole help, as before
    assert code == 2 and "Quick start" in err


@pytest.mark.parametrize(
    "name,value,needle",
    [
        ("COTBRIDGE_CPU_BF16", "maybe", "COTBRIDGE_CPU_BF16='maybe': must be 1 (native bf16) or 0 (none)"),
        ("COTBRIDGE_MALLOC", "bogus", "COTBRIDGE_MALLOC='bogus': must be heap or default"),
        ("COTBRIDGE_GGUF_CACHE", "", "COTBRIDGE_GGUF_CACHE is empty"),  # as a path: the current folder
    ],
)
def test_an_environment_value_a_variable_does_not_take_is_refused_before_any_work(
    monkeypatch, capsys, name, value, needle
):
    monkeypatch.setenv(name, value)
    code, out, err = run_main(monkeypatch, capsys, "tasks")
    line = one_line(err)
    assert code == 2 and line.startswith(f"error: {needle}") and line.endswith("or unset it") and not out, line
    code, out, err = run_main(monkeypatch, capsys, "eval", "--help")  # the help still answers, and says nothing of it
    assert code == 0 and out.startswith("Usage: ") and name not in out + err


def test_environment_values_are_checked_where_they_are_read(monkeypatch):
    from cotbridge.allocator import malloc_setting
    from cotbridge.models.cpu_features import forced_native_bf16
    from cotbridge.models.loading import cpu_has_native_bf16, gguf_cache_root

    monkeypatch.setenv("COTBRIDGE_CPU_BF16", "yes")
    with pytest.raises(UserError, match="COTBRIDGE_CPU_BF16"):
        cpu_has_native_bf16()
    monkeypatch.setenv("COTBRIDGE_MALLOC", "Heap")
    with pytest.raises(UserError, match="COTBRIDGE_MALLOC"):
        malloc_setting()
    for value, forced in (("1", True), ("0", False)):  # the values they take still work
        monkeypatch.setenv("COTBRIDGE_CPU_BF16", value)
        assert forced_native_bf16() is forced and cpu_has_native_bf16() is forced
    monkeypatch.delenv("COTBRIDGE_CPU_BF16")
    assert forced_native_bf16() is None
    monkeypatch.setenv("COTBRIDGE_GGUF_CACHE", "off")
    assert gguf_cache_root() is None


def test_tasks_offers_no_data_dir(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "tasks", "--data-dir", str(tmp_path))
    line = one_line(err)
    assert code == 2 and "cotbridge tasks: no such option" in line and "--data-dir" in line, err


@pytest.mark.parametrize(
    "data_dir,problem",
    [
        ("missing", "data directory missing does not exist"),
        ("preds.jsonl", "data directory preds.jsonl is a file, not a folder"),
        ("", "the data directory is empty text ''"),  # not "unset": that would load the hub
    ],
)
def test_a_data_dir_that_is_not_a_folder_is_refused(monkeypatch, capsys, tmp_path, data_dir, problem):
    monkeypatch.chdir(tmp_path)
    Path("preds.jsonl").write_text('{"output": "The answer is 3", "target": "3"}\n', encoding="utf-8")
    argv = ["eval", "--task", "svamp", "--predictions", "preds.jsonl", "--gold-field", "target", "-o", "scored"]
    code, _, err = run_main(monkeypatch, capsys, *argv, "--data-dir", data_dir)
    line = one_line(err)
    assert code == 2 and line.startswith(f"error: --data-dir: {problem}; give the folder"), line
    assert not Path("scored").exists()
    Path("data").mkdir()  # a folder that is there: scored as before (no --id-field: the task's data is not read)
    code, out, err = run_main(monkeypatch, capsys, *argv, "--data-dir", "data")
    assert code == 0 and "svamp: accuracy 1.000" in out, err


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: q\nteacher:\n  model: a\nname: r\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"^.*c\.yaml:4: duplicate key 'name' \(first on line 1\): keep one$"):
        read_yaml(cfg)
    cfg.write_text("teacher:\n  model: a\n  options: {x: 1}\n  model: b\n", encoding="utf-8")  # nested
    with pytest.raises(UserError, match=r"c\.yaml:4: duplicate key 'model'"):
        read_yaml(cfg)
    cfg.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n", encoding="utf-8")  # a merge's override
    assert read_yaml(cfg)["other"] == {"x": 3, "y": 2}
    with pytest.raises(UserError, match="duplicate key 'a'"):  # --set values go through the same loader
        load_config(Settings, None, ["k={a: 1, a: 2}"])


@pytest.mark.parametrize("text", ["", "# settings to come\n"])
def test_an_empty_config_is_refused_before_a_run_starts(monkeypatch, capsys, tmp_path, text):
    monkeypatch.chdir(tmp_path)
    Path("empty.yaml").write_text(text, encoding="utf-8")

    def started(*args, **kwargs):  # what an empty config used to reach: the quickstart's whole default run
        raise AssertionError("a run started")

    monkeypatch.setattr("cotbridge.engine.run_recipe", started)
    code, out, err = run_main(monkeypatch, capsys, "run", "empty.yaml")
    assert code == 2 and one_line(err).startswith("error: empty.yaml is empty: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml"]  # no run folder
    Path("all-defaults.yaml").write_text("{}\n", encoding="utf-8")  # defaults asked for in so many words
    assert read_yaml("all-defaults.yaml") == {}


def test_score_refuses_nothing_to_score(monkeypatch, capsys, tmp_path):
    """An empty input or `--scorers ,` wrote an empty or unscored file and exited 0, where eval, curate and train
    refuse empty input."""
    empty, out = tmp_path / "empty.jsonl", tmp_path / "scored.jsonl"
    empty.write_text("")
    code, _, err = run_main(monkeypatch, capsys, "score", str(empty), "-o", str(out), "--scorers", "flesch")
    assert code == 2 and f"{empty}: no records to score" in one_line(err) and not out.exists()
    items = tmp_path / "items.jsonl"
    items.write_text('{"question": "q", "rationale": "Two and two make four."}\n')
    code, _, err = run_main(monkeypatch, capsys, "score", str(items), "-o", str(out), "--scorers", ",")
    assert code == 2 and "'scorers'" in one_line(err) and not out.exists()


def test_an_empty_data_dir_in_a_config_is_refused_not_taken_for_the_hub():
    from cotbridge.errors import UserError
    from cotbridge.tasks.base import resolve_data_dir

    with pytest.raises(UserError, match="data_dir is empty text"):
        resolve_data_dir("")
    with pytest.raises(UserError, match="data_dir is empty text"):
        resolve_data_dir("  ")


def test_few_shot_prompts_are_read_before_a_model_loads(tmp_path, monkeypatch, tiny_model_dir):
    import cotbridge.evaluation.run as run
    from cotbridge.errors import UserError

    monkeypatch.setattr(run, "get_backend", lambda *a, **k: pytest.fail("the model was loaded first"))
    cfg = run.EvalConfig(
        model=str(tiny_model_dir), tasks=["synthetic_arithmetic:k=2"], mode="few_shot_cot", limit=2,
        few_shot_prompts=str(tmp_path / "missing.json"), output=str(tmp_path / "out"),
    )  # fmt: skip
    with pytest.raises(UserError, match="missing.json"):
        run.run_eval(cfg, progress=False)
    (tmp_path / "other.json").write_text('{"gsm8k": {"prompt": "Q: 1+1? A: 2."}}')
    with pytest.raises(UserError, match="no few-shot prompt for 'synthetic_arithmetic'"):
        run.run_eval(cfg.model_copy(update={"few_shot_prompts": str(tmp_path / "other.json")}), progress=False)


def test_a_line_break_in_a_path_keeps_the_error_on_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "eval", "-c", str(tmp_path / "no\nfile.yaml"))
    assert code == 2 and one_line(err).endswith("no\\nfile.yaml not found")
