"""The stage engine: a recipe declares its stages; the engine owns the run directory around them.

What the engine does for every recipe (Fine-tune-CoT, Instruction-tuning-CoT, LM-guided CoT, and any new one):

- validates ``--from`` / ``--until`` against the recipe's stage names before anything runs;
- ``--from STAGE`` makes the outputs that STAGE and every later stage declared again: they are set aside first and
  deleted only once STAGE has run through; if STAGE fails (a bad option, a network fault, Ctrl-C) they are put back,
  with the recorded config, so a failed redo loses nothing;
- ``--from`` after ``--until`` (a range that runs nothing) is refused;
- locks the run directory for the whole run: a second command on it is refused with the holder's PID;
- refuses to resume under a config other than the recorded one unless ``--from`` names a stage at or before the
  first one whose declared settings changed (run_record.py; ``--force-new`` keeps the old directory aside as
  ``<run_dir>.replaced-<time>`` and starts over);
- creates the run directory and writes the recipe's config to ``config.yaml`` once, before the first stage
  (a stage that records its own settings does so inside its own sub-folder, e.g. ``teacher/<task>.config.yaml``);
- runs the stages in order and records each one's wall and CPU time in ``timings.json``. A stage that found its
  work already on disk (resume) returns in well under a second and keeps the timing of the run that did the work.

Stages resume by themselves: each one skips what its outputs show is done, so a rerun after a crash repeats only
unfinished work (and paid calls come back from the request cache).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cotbridge.config import StrictModel
from cotbridge.errors import UserError
from cotbridge.folder_lock import LOCK_NAME, folder_lock
from cotbridge.jsonl import read_json, write_json
from cotbridge.models.loading import check_local_models
from cotbridge.models.pool import keeping_models
from cotbridge.registry import Registry
from cotbridge.run_record import CONFIG_FILE, RunRecord

log = logging.getLogger(__name__)
RESUMED_S = 1.0  # a stage that returned faster than this found its work done
T = TypeVar("T")


@dataclass
class Stage:
    """One step of a recipe: ``run`` does (or resumes) the work; ``outputs`` are what ``--from`` removes."""

    name: str
    run: Callable[[], Any]
    outputs: Callable[[], list[Path]] = field(default=lambda: [])
    doc: str = ""
    # Config keys (dotted prefixes) this stage's outputs depend on: a change redoes it and every later stage
    # (run_record.RunRecord.check); keys no stage declares count as the first stage's.
    settings: tuple[str, ...] = ()


def unit(marker: Path, make: Callable[[], T], read: Callable[[Path], T] = read_json) -> T:
    """One piece of a stage's work (a student, a method's data, an evaluation) that is complete when ``marker``
    exists: then its result is read back, otherwise ``make`` does the work. ``make`` may write the marker itself
    (last, once the work is whole); if it does not, its return value is written there as JSON. A stage is a list
    of units, so a rerun after a crash redoes only the units whose marker is missing, and recipes hold no
    skip-if-done checks of their own."""
    if marker.exists():
        return read(marker)
    value = make()
    if not marker.exists():
        write_json(marker, value)
    return value


class Recipe(Protocol):
    """What the engine needs of a recipe; see docs/architecture.md for a skeleton."""

    config: StrictModel  # written to <run_dir>/config.yaml
    run_dir: Path

    def stages(self) -> list[Stage]: ...

    def summary(self, results: dict[str, Any]) -> dict[str, Any]:
        """What the command prints and returns, from each stage's return value."""
        ...


# Recipe name -> recipe class (constructed as ``cls(config, progress=...)``); the CLI commands look them up here.
RECIPES: Registry[Any] = Registry("recipe")


def stage_names(recipe: Recipe) -> list[str]:
    return [s.name for s in recipe.stages()]


def check_stage(recipe: Recipe, name: str | None, option: str) -> None:
    names = stage_names(recipe)
    if name is not None and name not in names:
        raise UserError(f"{option}: unknown stage {name!r} (stages: {', '.join(names)})")


ASIDE = ".redo-aside"  # inside the run directory: a rename, never a copy, and on the same filesystem


class OutputsAside:
    """``--from STAGE``: the outputs of STAGE and every later stage moved to ``<run_dir>/.redo-aside`` (so the
    stages make them again) together with the recorded config; ``restore()`` puts them back, ``drop()`` deletes them.
    Outputs outside the run directory are moved beside themselves (``<name>.redo-aside``)."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.root = run_dir, run_dir / ASIDE
        if self.root.exists():  # left by a redo killed before it could restore or drop: those are the newest kept
            raise UserError(
                f"{self.root} holds the outputs a previous --from set aside and could not put back: move what you "
                "need back into the run directory (or delete it), then rerun"
            )
        self.moved: list[tuple[Path, Path]] = []

    def set_aside(self, stages: list[Stage], from_stage: str) -> None:
        """Move the outputs; on any failure midway (Ctrl-C included) what was moved is put back first."""
        names = [s.name for s in stages]
        paths = [p for stage in stages[names.index(from_stage) :] for p in stage.outputs()]
        # a folder before what it holds (two stages may declare a folder and a file in it): each moved once, whole
        paths = sorted(dict.fromkeys(paths), key=lambda p: len(p.parts))
        try:
            for path in paths:
                if path.exists() and not any(path.is_relative_to(src) for src, _ in self.moved):
                    self._move(path, self._aside(path))
                    log.info("--from %s: set aside %s", from_stage, path)
            record = self.run_dir / "config.yaml"
            if record.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                shutil.copy2(record, self.root / "config.yaml.recorded")
        except BaseException:
            self.restore([])
            raise

    def _inside(self, path: Path) -> Path | None:
        """``path`` relative to the run directory; None for a path outside it."""
        try:
            return path.resolve().relative_to(self.run_dir.resolve())
        except ValueError:
            return None

    def _aside(self, path: Path) -> Path:
        inside = self._inside(path)
        return self.root / "outputs" / inside if inside is not None else path.with_name(path.name + ASIDE)

    def _move(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        self.moved.append((src, dst))

    def restore(self, made_anew: list[Path]) -> None:
        """Back as they were; what the failed stage wrote in their place goes to ``<run_dir>/.redo-failed-<time>``
        (paid responses stay in the request cache either way). Each item on its own: one that cannot be moved back is
        logged and ``.redo-aside`` kept for it, and the error that ended the stage is the one raised."""
        failed = self.run_dir / f".redo-failed-{time.strftime('%Y%m%d-%H%M%S')}"
        stuck = []
        moves = [(p, failed / (self._inside(p) or p.name)) for p in made_anew if p.exists()]
        moves += [(dst, src) for src, dst in reversed(self.moved)]
        recorded = self.root / "config.yaml.recorded"
        if recorded.exists():
            moves.append((recorded, self.run_dir / "config.yaml"))
        for src, dst in moves:
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.replace(dst)
            except OSError as e:
                stuck.append(src)
                log.error("could not put %s back as %s (%s); it stays there", src, dst, e)
        if not stuck:
            shutil.rmtree(self.root, ignore_errors=True)
        if failed.exists():
            log.warning("the failed stage's partial outputs are kept in %s", failed)

    def drop(self) -> None:
        for _, dst in self.moved:
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
        shutil.rmtree(self.root, ignore_errors=True)


def set_aside(run_dir: Path) -> Path | None:
    """``--force-new``: keep the old run directory (nothing is deleted) as ``<run_dir>.replaced-<time>``."""
    if not run_dir.exists() or not any(p.name != ".lock" for p in run_dir.iterdir()):
        return None
    target = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.rename(target)
    log.warning("--force-new: the previous run directory is kept as %s", target)
    return target


def run_recipe(
    recipe: Recipe, from_stage: str | None = None, until: str | None = None, force_new: bool = False
) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe`` in its run directory; ``until`` stops after that stage.

    The run directory is locked for the whole run (a second command on it is refused, naming this one's PID)."""
    check_stage(recipe, from_stage, "--from")
    check_stage(recipe, until, "--until")
    names = stage_names(recipe)
    if from_stage and until and names.index(until) < names.index(from_stage):
        raise UserError(
            f"--until {until} comes before --from {from_stage}: nothing would run (stages: {', '.join(names)})"
        )
    check_local_models(recipe.config)
    if force_new:
        set_aside(recipe.run_dir)
    # One model pool for the run: its stages load the same base model to train and to evaluate each method.
    with folder_lock(recipe.run_dir, "run_dir (--set run_dir=...)"), keeping_models():
        return _run_locked(recipe, from_stage, until)


def _run_locked(recipe: Recipe, from_stage: str | None, until: str | None) -> dict[str, Any]:
    run_dir, record = recipe.run_dir, RunRecord(recipe.run_dir)
    stages = recipe.stages()
    if any(p.name not in (CONFIG_FILE, LOCK_NAME) for p in run_dir.iterdir()):
        record.check(recipe.config, stages, from_stage)
    # else the directory holds only its record (a first run that failed before making anything): nothing was made
    # under the recorded settings, so nothing to keep them for
    if not from_stage and (run_dir / ASIDE).exists():
        log.warning("%s: outputs an interrupted --from set aside; delete it once this run is done", run_dir / ASIDE)
    aside = OutputsAside(run_dir) if from_stage else None
    if aside is not None:
        aside.set_aside(stages, from_stage)
    results: dict[str, Any] = {}
    try:
        record.write(recipe.config)
        timings_path = run_dir / "timings.json"
        timings = read_json(timings_path) if timings_path.exists() else {}
        for stage in stages:
            log.info("stage %s", stage.name)
            wall, cpu = time.perf_counter(), time.process_time()
            results[stage.name] = stage.run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if aside is not None and stage.name == from_stage:
                done, aside = aside, None  # redone: the old outputs of this stage and every later one are obsolete
                done.drop()
            if wall > RESUMED_S:
                timings[stage.name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
                write_json(timings_path, timings)
            if stage.name == until:
                return {"stopped_after": stage.name}
    except BaseException:
        if aside is not None:  # the redo did not get through its first stage: put everything back
            aside.restore(next(s for s in stages if s.name == from_stage).outputs())
        raise
    return recipe.summary(results)
