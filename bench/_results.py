"""Where every bench writes its figures: <out>.json (the numbers) and <out>.md (the rendered table), also printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_results(out: str | Path, result: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render(result)
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
