"""Loading tasks from public Hugging Face hub copies (needs network; offline runs use --data-dir).

Each spec maps a hub dataset's fields onto Example. Only copies whose fields we know are listed;
the rest of the Fine-tune-CoT tasks need the unified data directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cotbridge.errors import UserError
from cotbridge.tasks.base import Example


@dataclass(frozen=True)
class HubSpec:
    path: str
    config: str | None
    splits: dict[str, str]  # our split -> hub split
    to_example: Callable[[dict[str, Any], str], Example]


# Filled by the task modules that know a hub copy's fields (finetune_cot, multihop): the loader knows no task.
HUB_SPECS: dict[str, HubSpec] = {}


def register_hub(task: str, spec: HubSpec) -> None:
    HUB_SPECS[task] = spec


def load_from_hub(task: str, split: str) -> list[Example]:
    spec = HUB_SPECS.get(task)
    if spec is None:
        raise UserError(
            f"task {task!r} has no known hub copy: pass --data-dir (or set COTBRIDGE_DATA_DIR) "
            "to a folder in the Fine-tune-CoT layout"
        )
    import datasets  # heavy import, only when a hub load is asked for

    try:
        rows = datasets.load_dataset(spec.path, spec.config, split=spec.splits[split])
    except Exception as e:  # network, auth or missing-dataset errors all end the same way for the user
        raise UserError(
            f"could not load {spec.path} from the hub ({type(e).__name__}: {e}); offline, pass --data-dir"
        ) from None
    return [spec.to_example(dict(r), str(i)) for i, r in enumerate(rows)]
