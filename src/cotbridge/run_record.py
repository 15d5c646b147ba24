"""A run directory's record of the settings that made its outputs, and the one place that compares settings.

Every command that keeps outputs between runs (a recipe's run directory, teach's record files, a training folder,
an evaluation folder) asks this module, and only this module, whether the settings it is about to use are the ones
recorded beside those outputs; a difference ends in one line naming what changed and what to do.

For a recipe, each stage declares the config keys its outputs depend on (``Stage.settings``). A change is charged to
the first stage that declares it (keys no stage declares, to the first stage: unknown means everything); since each
stage reads what the ones before it wrote, that stage and every later one must be redone. So:

- a plain rerun under changed settings is refused, naming the change and the ``--from STAGE`` that redoes it;
- ``--from STAGE`` is accepted only when every changed setting belongs to STAGE or a later one: a change that would
  leave a kept stage's outputs describing other settings (e.g. ``student.lr`` with ``--from eval``, which keeps the
  trained student) is refused, naming the setting, the stage it belongs to and the ``--from`` that redoes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cotbridge.config import changed_items, changed_keys, describe_changes, dump_config, restoring_sets
from cotbridge.errors import UserError
from cotbridge.fileio import write_text

CONFIG_FILE = "config.yaml"
# Where the run lives, not what made its outputs: the record is inside that directory, so a run moved or named by
# another path (relative vs absolute) is the same run.
LOCATION_KEYS = ("run_dir",)


def refuse_if_changed(
    recorded: dict[str, Any] | None,
    current: dict[str, Any],
    *,
    holder: str,
    remedy: str,
    cfg: BaseModel | None = None,
    prefix: str = "",
) -> None:
    """Raise one line when ``current`` differs from ``recorded``: ``{holder} ({what changed}); {remedy}``.

    ``cfg`` (the config the current record was made from, under ``prefix`` in it) adds the ``--set KEY=RECORDED``
    that keeps a recorded value whose default moved in a newer cotbridge. ``recorded=None`` means nothing records
    what made the outputs: refused too, since they cannot be shown to match."""
    changes = ["no record of the settings that made them"] if recorded is None else changed_keys(recorded, current)
    if not changes:
        return
    keep = restoring_sets(recorded, current, cfg, prefix) if recorded is not None and cfg is not None else []
    hint = f", or keep the recorded values of changed defaults: {' '.join(keep)}" if keep else ""
    raise UserError(f"{holder} ({describe_changes(changes)}); {remedy}{hint}")


def short(value: Any, limit: int = 60) -> str:
    """A changed value as the one-line message shows it: whole lists of teachers made it 3 KB long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 12] + f"... ({len(text)} chars)"


def _declares(prefix: str, key: str) -> bool:
    """Whether a stage declaring ``prefix`` owns the changed dotted ``key`` (or a section holding it)."""
    return key == prefix or key.startswith(prefix + ".") or prefix.startswith(key + ".")


def owning_stage(key: str, stages: Sequence[Any]) -> int:
    """Index of the first stage whose declared settings cover ``key``; 0 when none does."""
    for i, stage in enumerate(stages):
        if any(_declares(p, key) for p in getattr(stage, "settings", ())):
            return i
    return 0


class RunRecord:
    """The recorded config of a recipe's run directory (``config.yaml``) and the check against it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / CONFIG_FILE

    def recorded(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UserError(
                f"{self.path}: unreadable ({type(e).__name__}); move it away or use another run_dir"
            ) from None
        return data if isinstance(data, dict) else {}

    def check(self, config: BaseModel, stages: Sequence[Any], from_stage: str | None = None) -> None:
        """Refuse to resume (or to redo from ``from_stage``) when a kept stage's settings changed."""
        old = self.recorded()
        if old is None:
            return
        new = yaml.safe_load(dump_config(config))
        changes = [c for c in changed_items(old, new) if c[0] not in LOCATION_KEYS]
        if not changes:
            return
        names = [s.name for s in stages]
        start = names.index(from_stage) if from_stage else len(names)
        kept = [(key, was, now, owning_stage(key, stages)) for key, was, now in changes]
        kept = [c for c in kept if c[3] < start]
        if not kept:
            return  # every change belongs to a stage that is redone
        first = min(c[3] for c in kept)
        described = describe_changes([f"{k}: {short(was)} -> {short(now)}" for k, was, now, _ in kept])
        if from_stage:
            raise UserError(
                f"{self.run_dir}: --from {from_stage} keeps stage {names[first]!r}, whose settings changed since it "
                f"ran ({described}): use --from {names[first]} to redo it, or --force-new to start over"
            )
        keep = restoring_sets(old, new, config)
        hint = f", or keep the recorded values of changed defaults: {' '.join(keep)}" if keep else ""
        raise UserError(
            f"{self.run_dir} was made with other settings ({described}): redo the stages they affect with "
            f"--from {names[first]}, start over with --force-new, or set another run_dir{hint}"
        )

    def write(self, config: BaseModel) -> None:
        write_text(self.path, dump_config(config))
