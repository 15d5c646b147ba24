"""Every number a user gives is range-checked before anything runs, with the valid range in the message (issue #24).

Enumerated, so a number added later without a range fails here: every int/float option of every command (an out-of-
range value is one line on stderr naming the option, the value and the whole range, exit 2, no traceback, the command
never entered; the bound itself is taken; ``--help`` shows the range), and every int/float field of every config
class (a ``Field`` bound, a default inside it, an out-of-range value named with its dotted key and range). No model is
loaded: the commands' bodies are replaced by a stub that records what the parser handed them.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import click
import pytest
import typer
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

import cotbridge
from cotbridge.cli import app
from cotbridge.cli.help_format import param_bounds
from cotbridge.config import StrictModel, describe_validation_error, field_bounds, load_config
from cotbridge.errors import range_short, range_words
from tests.conftest import REPO

# --------------------------------------------------------------------------------------------- command-line options


def is_number(param: click.Parameter) -> bool:
    descriptor = getattr(param, "type_descriptor", None)  # Typer keeps the annotation (Optional stripped)
    if descriptor is not None:
        return descriptor.annotation in (int, float)
    return isinstance(getattr(param, "type", None), (click.types.IntParamType, click.types.FloatParamType))


def is_int(param: click.Parameter) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    return descriptor.annotation is int if descriptor is not None else isinstance(param.type, click.types.IntParamType)


def commands() -> dict[str, click.Command]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


NUMERIC_OPTIONS = [
    (name, param.name) for name, command in sorted(commands().items()) for param in command.params if is_number(param)
]


def test_the_enumeration_finds_the_numeric_options():
    """A guard on the guard: the options the issue names are among those enumerated."""
    for expected in [("serve", "port"), ("serve", "max_body_mb"), ("eval", "k"), ("teach", "samples")]:
        assert expected in NUMERIC_OPTIONS
    assert ("train", "num_processes") in NUMERIC_OPTIONS and ("traces", "limit") in NUMERIC_OPTIONS
    assert len(NUMERIC_OPTIONS) >= 17


def required_args(command: click.Command) -> list[str]:
    """Placeholders for a command's required arguments and options, so parsing reaches the option under test."""
    args: list[str] = []
    for param in command.params:
        if param.required:
            args += ["x"] if param.param_type_name == "argument" else [param.opts[0], "x"]
    return args


def out_of_range(bounds: dict[str, float]) -> list[float]:
    """A value just past each bound (a whole number past a whole bound: wrong for ints and floats alike)."""
    values = []
    if "ge" in bounds:
        values.append(bounds["ge"] - 1)
    if "gt" in bounds:
        values.append(bounds["gt"])
    if "le" in bounds:
        values.append(bounds["le"] + 1)
    if "lt" in bounds:
        values.append(bounds["lt"])
    return values


def run_main(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, dict | None]:
    """``cotbridge ARGV`` through the real entry point (:func:`cotbridge.cli.app.main`, which prints user errors),
    with every command's body replaced by a stub: (exit status, stderr, the values the body would have got)."""
    group = typer.main.get_command(app)
    got: dict = {}
    for command in group.commands.values():  # type: ignore[attr-defined]
        command.callback = lambda **kwargs: got.update(kwargs)
    module = importlib.import_module("cotbridge.cli.app")
    monkeypatch.setattr(module, "app", group)
    monkeypatch.setattr(sys, "argv", ["cotbridge", *argv])
    with pytest.raises(SystemExit) as stop:
        module.main()
    code = stop.value.code if isinstance(stop.value.code, int) else 1
    return code, capsys.readouterr().err, (got or None)


@pytest.mark.parametrize("command_name,param_name", NUMERIC_OPTIONS)
def test_every_numeric_option_is_range_checked_while_parsing(monkeypatch, capsys, command_name, param_name):
    command = commands()[command_name]
    param = next(p for p in command.params if p.name == param_name)
    option = param.opts[0]
    bounds = param_bounds(param)
    assert bounds, (
        f"cotbridge {command_name} {option} takes a number without a range: give it callback=in_range(...) "
        "(cli/options.py), or let it stand for a config key with Field bounds (OPTIONS of a with_settings command)"
    )
    integer = is_int(param)
    values = out_of_range(bounds) + ([] if integer else [float("nan"), float("inf")])
    for value in values:
        shown = repr(value)
        code, err, ran = run_main(monkeypatch, capsys, [command_name, *required_args(command), option, shown])
        assert code == 2, (option, shown, code, err)
        assert ran is None, f"{option} {shown}: the command ran"
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        line = err.strip()
        assert line.startswith(f"error: {option} "), line
        assert f"must be {range_words(bounds)}" in line or f"must be a finite number {range_words(bounds)}" in line
    for op in ("ge", "le"):  # the bound itself is taken, and handed to the command as given
        if op in bounds:
            shown = repr(int(bounds[op]) if integer else float(bounds[op]))
            code, err, ran = run_main(monkeypatch, capsys, [command_name, *required_args(command), option, shown])
            assert code == 0 and ran is not None and ran[param_name] == float(shown), (option, shown, err)


@pytest.mark.parametrize("command_name", sorted({c for c, _ in NUMERIC_OPTIONS}))
def test_help_shows_each_numeric_options_range(command_name):
    res = CliRunner().invoke(app, [command_name, "--help"], env={"COLUMNS": "1000"}, prog_name="cotbridge")
    assert res.exit_code == 0, res.output
    for param in commands()[command_name].params:
        if is_number(param):
            first_column = re.compile(rf"\s*(-\w, )?{re.escape(param.opts[0])}\b")
            entry = next(e for e in re.split(r"\n(?=\s+-)", res.output) if first_column.match(e))  # wrapped lines
            assert f"[{range_short(param_bounds(param))}" in " ".join(entry.split()), entry  # type: ignore[arg-type]


def test_a_real_process_prints_one_line_and_exits_2():
    """The same through ``python -m cotbridge``: a plain option and a config key given by --set."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for argv, needle in [
        (
            ["serve", "some-model", "--port", "70000"],
            "--port 70000: must be greater than or equal to 0 and less than or equal to 65535",
        ),
        (
            ["train", "missing.jsonl", "--set", "warmup_ratio=1"],
            "config key 'warmup_ratio': 1 is out of range: must be greater than or equal to 0 and less than 1",
        ),
    ]:
        done = subprocess.run([sys.executable, "-m", "cotbridge", *argv], capture_output=True, text=True, env=env)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
        assert needle in done.stderr, done.stderr


# --------------------------------------------------------------------------------------------- config keys

# Numeric config fields with no bound, each with the reason none makes sense. Empty today: even seeds have one
# (numpy's [0, 2**32-1]). A new entry needs its reason.
UNBOUNDED: dict[str, str] = {}


def config_classes() -> list[type[BaseModel]]:
    for info in pkgutil.walk_packages(cotbridge.__path__, "cotbridge."):
        if info.name != "cotbridge.__main__":
            importlib.import_module(info.name)

    def below(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *below(sub))]

    # cotbridge's own models only: a test module's toy config (test_run_record's) may be loaded in the same session
    ours = {c for c in below(StrictModel) if c.__module__.startswith("cotbridge.")}
    return sorted(ours, key=lambda c: (c.__module__, c.__qualname__))


def numbers_in(annotation) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return numbers_in(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(numbers_in(a) for a in typing.get_args(annotation))
    return annotation in (int, float)


NUMERIC_FIELDS = [
    (cls, name) for cls in config_classes() for name, field in cls.model_fields.items() if numbers_in(field.annotation)
]


def test_the_enumeration_finds_the_config_classes_numbers():
    names = {f"{cls.__name__}.{name}" for cls, name in NUMERIC_FIELDS}
    for expected in [
        "TrainConfig.lr",
        "TrainConfig.warmup_ratio",
        "OnPolicyConfig.lr",
        "StudentConfig.lr",
        "EvalConfig.temperature",
        "TeachConfig.samples",
        "RLConfig.num_generations",
        "MethodSpec.samples",
    ]:
        assert expected in names
    assert len(NUMERIC_FIELDS) >= 120


def inside(value, bounds: dict[str, float]) -> bool:
    return all({"ge": value >= b, "gt": value > b, "le": value <= b, "lt": value < b}[op] for op, b in bounds.items())


@pytest.mark.parametrize("cls,name", NUMERIC_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in NUMERIC_FIELDS])
def test_every_numeric_config_key_has_a_range(cls, name):
    key = f"{cls.__module__}:{cls.__qualname__}.{name}"
    field = cls.model_fields[name]
    bounds = field_bounds(field)
    if key in UNBOUNDED:
        assert not bounds, f"{key} has a range now: drop it from UNBOUNDED"
        return
    assert bounds, (
        f"{key} is a number without a range: give it Field(ge=/gt=/le=/lt=) (a subclass that changes the default "
        "restates its parent's bounds), or list it in UNBOUNDED with the reason"
    )
    default = field.get_default(call_default_factory=True)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        assert inside(default, bounds), f"{key}: the default {default} is outside its own range"
    for value in out_of_range(bounds):
        obj = cls.model_construct()
        with pytest.raises(ValidationError) as refused:
            setattr(obj, name, value)  # validate_assignment: the field's own validation, nothing else
        message = describe_validation_error(refused.value, "cfg.yaml", cls)
        assert f"config key '{name}': {value!r} is out of range: must be {range_words(bounds)}" in message, message


def test_a_nested_key_out_of_range_is_named_by_its_dotted_path(tmp_path):
    from cotbridge.errors import UserError
    from cotbridge.recipes.finetune_cot.config import RunConfig

    (tmp_path / "run.yaml").write_text(
        "methods:\n  - {name: d, kind: distill, samples: 0}\nstudent: {batch_size: 0, lr: .inf}\n"
    )
    with pytest.raises(UserError) as refused:
        load_config(RunConfig, tmp_path / "run.yaml", ["student.seed=-1"])
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'run.yaml'} + --set: ")
    assert "config key 'methods.0.samples': 0 is out of range: must be greater than or equal to 1" in message
    # a union (int | "auto"): the range and the other choice, not one complaint per member
    assert (
        "config key 'student.batch_size': 0 is out of range: must be greater than or equal to 1 or 'auto'" in message
    )
    assert "config key 'student.lr': inf is out of range: must be a finite number greater than 0" in message
    assert (
        "config key 'student.seed': -1 is out of range: must be greater than or equal to 0 and less than or "
        in message
    )
    assert "constrained-int" not in message and "literal" not in message


def shipped_configs() -> list[Path]:
    return sorted((REPO / "recipes").glob("*.yaml")) + sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_every_shipped_config_is_inside_the_ranges(path):
    from cotbridge.evaluation.run import EvalConfig
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.instruct.config import InstructConfig
    from cotbridge.recipes.lm_guided.config import LMGuidedConfig
    from cotbridge.recipes.on_policy.config import OnPolicyRunConfig

    prefixes = {
        "finetune_cot": RunConfig,
        "quickstart": RunConfig,
        "instruction_tuning": InstructConfig,
        "lm_guided": LMGuidedConfig,
        "on_policy": OnPolicyRunConfig,
        "eval_": EvalConfig,
    }
    cls = next(c for prefix, c in prefixes.items() if path.name.startswith(prefix))
    load_config(cls, path)  # a value outside its key's range is a UserError naming it
