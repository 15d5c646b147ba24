"""The teach stage's "walk": following the TeachConfig object through one `run_teach` call (the reference teacher,
8 questions x 2 samples), which modules hold it, in call order. A *stay* is a run of consecutive calls in one
module; a *return* is a stay in a module the walk had already left. Issue #23 asks for at most 8 returns.

A frame holds the config when ``cfg`` or ``self.cfg`` (or ``self.plan.cfg``) among its locals is that object.
Run: .venv/bin/python bench/teach_walk.py > bench/results/teach_walk.json   (prints JSON)
"""

from __future__ import annotations

import json
import sys
import tempfile

from cotbridge.teach import TeachConfig, run_teach


def holds(frame, cfg) -> bool:
    loc = frame.f_locals
    if loc.get("cfg") is cfg:
        return True
    owner = loc.get("self")
    return getattr(owner, "cfg", None) is cfg or getattr(getattr(owner, "plan", None), "cfg", None) is cfg


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TeachConfig(task="synthetic_arithmetic:k=2", limit=8, samples=2, run_dir=tmp, cache="off")
        modules: list[str] = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_globals.get("__name__", "").startswith("cotbridge") and holds(frame, cfg):
                name = frame.f_globals["__name__"]
                if not modules or modules[-1] != name:
                    modules.append(name)

        sys.setprofile(profile)
        try:
            run_teach(cfg, progress=False)
        finally:
            sys.setprofile(None)
    seen, returns = set(), 0
    for m in modules:
        returns += m in seen
        seen.add(m)
    print(json.dumps({"modules": len(seen), "stays": len(modules), "returns": returns, "walk": modules}, indent=1))


if __name__ == "__main__":
    main()
