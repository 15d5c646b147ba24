"""Where the benches find the repository, the shared data beside it and the offline model (SmolLM2-135M-Instruct, the
Q4_1 GGUF in ../shared/data/models): one place, so that a moved data folder is one edit."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL_DIR = DATA / "models" / "smollm2-135m-instruct-q4_1"
