"""Every `cotbridge ...` line in the README parses as written (its options and arguments exist, the files it names
exist), and the ones that need no model, network or key run as written, in order, from a fresh folder: each exits 0
and every path it says it wrote exists (issue #23: help and README drifted from the code)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cotbridge.cli import app
from tests.conftest import REPO, SHARED_DATA

PLACEHOLDER = re.compile(r"^(MODEL|TASK|CONFIG|FILE\.jsonl|\.\.\.|\[\.\.\.\])$")
# Run for real (cheap: no model, no network); in README order, since later lines read what earlier ones wrote.
RUN = (
    "cotbridge tasks",
    "cotbridge teach --task synthetic_arithmetic:k=3 --teacher reference",
    "cotbridge teach --task svamp --data-dir ../shared/data --teacher replay",
    "cotbridge teach --task gsm8k --data-dir ../shared/data --teacher openai --teacher-model gpt-4o-mini -D 4 --dry",
    "cotbridge curate runs/demo/teacher/synthetic_arithmetic.jsonl",
    "cotbridge eval --task gsm8k --predictions",
    "cotbridge view runs/demo/teacher/synthetic_arithmetic.jsonl",
)


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  # ")[0].strip()
            if line.startswith("cotbridge "):
                lines += [part.strip() for part in line.split(" ; ")]
    return lines


def test_the_readme_shows_the_commands_this_test_runs():
    commands = readme_commands()
    assert len(commands) >= 30
    for prefix in RUN:
        assert any(c.startswith(prefix) for c in commands), prefix


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_parses_and_names_files_that_exist(line):
    argv = shlex.split(line)[1:]
    if any(PLACEHOLDER.match(a) for a in argv):
        pytest.skip("a placeholder, not a command to copy")
    group = typer.main.get_command(app)
    ctx = group.make_context("cotbridge", list(argv), resilient_parsing=False)
    sub = group.get_command(ctx, argv[0])  # type: ignore[attr-defined]
    assert sub is not None, line
    sub.make_context(argv[0], argv[1:], parent=ctx)  # raises on an unknown option or a missing argument
    for token in argv:
        if token.startswith(("examples/", "recipes/", "../shared/")) and not token.startswith("../shared/data/hub"):
            if token.startswith("../shared") and not SHARED_DATA.is_dir():
                continue
            assert (REPO / token).exists(), f"{line}: {token} does not exist"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_the_cheap_readme_commands_run_as_written_and_what_they_print_exists(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    for name in ("examples", "recipes"):
        (root / name).symlink_to(REPO / name)
    commands, printed = readme_commands(), []
    for prefix in RUN:
        line = next(c for c in commands if c.startswith(prefix))
        done = subprocess.run(
            [sys.executable, "-m", "cotbridge", *shlex.split(line)[1:]],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            env={"COTBRIDGE_CACHE": str(tmp_path / "cache.sqlite"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, (line, done.stderr[-2000:])
        for match in re.finditer(r"(?:wrote|view:|list:)\s+(\S+\.(?:jsonl|json|html|md))", done.stdout):
            printed.append(match.group(1))
            assert (root / match.group(1)).exists() or Path(match.group(1)).exists(), (line, match.group(1))
    assert len(printed) >= 5, printed  # teach x2, curate, eval and view each name what they wrote
