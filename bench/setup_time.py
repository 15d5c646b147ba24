"""`make setup` from a fresh clone with each installer: uv for everything but torch (the default) against pip only
(``INSTALLER=pip``), in alternating order, each in a new clone with empty download caches (pip's and uv's), so that
every run downloads what a new machine would (torch aside, where pip's configuration names a local wheel). A uv run
counts only if uv installed the packages (their INSTALLER records), not pip after a uv failure. Also checks that
both give the same packages (``pip freeze``, uv itself aside).

    python bench/setup_time.py --out bench/results/setup_time            # uv, pip, pip, uv (~5 min, needs PyPI)
    python bench/setup_time.py --order uv,pip --out "$(mktemp -d)/setup"  # smoke test
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _paths import ROOT
from _results import cpu_model, write_results


def fresh_setup(installer: str, work: Path) -> dict[str, Any]:
    """One `make setup` in a new clone of this repository's HEAD, with empty caches; its time and package list."""
    clone = work / f"clone-{installer}-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    caches = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "PIP_CACHE_DIR": str(caches / "pip"), "UV_CACHE_DIR": str(caches / "uv")}
    t0 = time.perf_counter()
    command = ["make", "setup", f"INSTALLER={installer}"]
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"make setup INSTALLER={installer} failed:\n{done.stderr[-2000:]}")
    freeze = subprocess.run(
        [str(clone / ".venv/bin/pip"), "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    [record] = clone.glob(".venv/lib/python3*/site-packages/transformers-*.dist-info/INSTALLER")
    if record.read_text().strip() != installer:
        sys.exit(f"make setup INSTALLER={installer}: {record.read_text().strip()} installed the packages")
    shutil.rmtree(clone)
    shutil.rmtree(caches)
    print(f"  {installer}: {seconds:.1f} s", file=sys.stderr)
    return {"installer": installer, "seconds": round(seconds, 1), "packages": sorted(freeze)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--order", default="uv,pip,pip,uv")
    p.add_argument("--out", default="bench/results/setup_time")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [fresh_setup(installer, Path(tmp)) for installer in args.order.split(",")]
    seconds: dict[str, list[float]] = {}
    packages: dict[str, set[str]] = {}
    for r in runs:
        seconds.setdefault(r["installer"], []).append(r["seconds"])
        packages.setdefault(r["installer"], set()).update(p for p in r["packages"] if not p.startswith("uv=="))
    result = {
        "command": "python bench/setup_time.py " + shlex.join(sys.argv[1:]),
        "cpu": cpu_model(),
        "runs": [{k: v for k, v in r.items() if k != "packages"} for r in runs],
        "mean_s": {k: round(sum(v) / len(v), 1) for k, v in seconds.items()},
        "same_packages": len({frozenset(v) for v in packages.values()}) == 1,
        "packages": len(next(iter(packages.values()))),
    }
    write_results(args.out, result, render)


def render(r: dict[str, Any]) -> str:
    mean = r["mean_s"]
    lines = [
        "# `make setup` from a fresh clone: uv for everything but torch, against pip only",
        "",
        f"Command: `{r['command']}`. Machine: {r['cpu']}.",
        "Each run: a new clone of HEAD, empty pip and uv caches (every package downloaded), then",
        "`make setup INSTALLER=...`.",
        "",
        "| run | installer | seconds |",
        "|---:|---|---:|",
        *(f"| {i + 1} | {run['installer']} | {run['seconds']} |" for i, run in enumerate(r["runs"])),
        "",
        "Mean: "
        + ", ".join(f"{k} {v} s" for k, v in sorted(mean.items()))
        + (f"; uv / pip = **{mean['uv'] / mean['pip']:.2f}**." if {"uv", "pip"} <= set(mean) else "."),
        "",
        f"Same packages and versions from both installers (`pip freeze --all`, uv itself aside): "
        f"{'yes' if r['same_packages'] else 'NO'} ({r['packages']} packages).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
