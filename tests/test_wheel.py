"""The package as a user gets it: `python -m build` makes a wheel that installs into a fresh venv and runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def run(*cmd, **kw):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_the_cli_runs(tmp_path):
    # Build from a copy so setuptools' build/ and egg-info never land in the working tree.
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("cotbridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every module of the package ships (a subpackage without __init__.py would be left out), and py.typed.
    modules = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "cotbridge").rglob("*.py")}
    assert modules | {"cotbridge/py.typed"} <= names, sorted(modules - names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    # The lock keeps torch on the 2.13.0 CPU wheel (a bare install would resolve the newest torch).
    run(venv / "bin" / "pip", "install", "-q", "-c", REPO / "constraints.txt", wheel)
    where = run(
        venv / "bin" / "python",
        "-c",
        "import cotbridge, torch; print(cotbridge.__file__, torch.__version__)",
        cwd=tmp_path,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith("2.13.0")  # the installed copy, not ./src
    help_text = run(venv / "bin" / "cotbridge", "--help", cwd=tmp_path).stdout
    assert "Usage" in help_text and "eval" in help_text
