"""Where every bench writes its figures: <out>.json (the numbers) and <out>.md (the rendered table), also printed."""

from __future__ import annotations

import json
import os
import subprocess
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


def cpu_model() -> str:
    """The CPU's model name, its count and whether it has native bf16 (the figures differ by CPU kind)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = {k.strip(): v for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    flags = fields.get("Flags", "").split()
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    # "AMD EPYC" names a Zen 3 and a Zen 4 alike: family and model tell them apart
    kind = f"family {fields.get('CPU family', '?').strip()}, model {fields.get('Model', '?').strip()}"
    name = fields.get("Model name", "?").strip()
    return f"{name} ({kind}), {os.cpu_count()} CPUs, native bf16: {', '.join(native) or 'no'}"


def environment() -> dict[str, Any]:
    """What a timing depends on besides the code: the CPU, torch's threads, library versions, the load at the end."""
    import platform

    import torch
    import transformers

    return {
        "cpu": cpu_model(),
        "machine": f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}",
        "load_average": os.getloadavg()[0],
    }


def heading(r: dict[str, Any], title: str) -> list[str]:
    """A result page's first lines: its title, the command and the machine (from :func:`environment`)."""
    return [
        f"# {title}",
        "",
        f"Command: `{r['command']}`.",
        f"Machine: {r['cpu']}; {r['machine']}; load average {r['load_average']:.2f} at the end.",
    ]
