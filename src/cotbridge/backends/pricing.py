"""API prices in USD per 1M tokens, and the cost of a call or of a planned (dry) run.

The built-in table holds list prices for a few common OpenAI models. They are defaults as of
writing (2025) and change without notice: override them with a YAML/JSON file
(``{model: {input: x, output: y}}``) passed as ``prices``. Models not in the table (local
servers, fine-tunes) cost ``None``, meaning "free or unknown" — never a made-up number.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cotbridge.errors import DataError, UserError

# USD per 1M tokens: defaults as of writing; override them with a price file.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-3.5-turbo": {"input": 0.50, "output": 1.50},
}

PriceTable = Mapping[str, Mapping[str, float]]
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def load_price_table(path: str | Path, *, merge_defaults: bool = True) -> dict[str, dict[str, float]]:
    """Read ``{model: {input: usd_per_1m, output: usd_per_1m}}`` from YAML or JSON.

    Entries override the built-in defaults (which are kept for other models unless
    ``merge_defaults`` is false). A bad entry raises a DataError naming the file and the key.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"price table {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            from cotbridge.config import parse_yaml  # refuses a model priced twice (the last entry won)

            data = parse_yaml(text)
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        raise DataError(
            p, f"not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {str(e).splitlines()[0]}"
        ) from None
    table = validate_price_table(data, source=p)
    return {**DEFAULT_PRICES, **table} if merge_defaults else table


def validate_price_table(data: Any, source: object = "price table") -> dict[str, dict[str, float]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(source, f"expected a mapping {{model: {{input: x, output: y}}}}, got {type(data).__name__}")
    table: dict[str, dict[str, float]] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise DataError(source, f"model {model!r}: expected {{input: x, output: y}}, got {entry!r}")
        unknown = set(entry) - {"input", "output"}
        missing = {"input", "output"} - set(entry)
        if unknown or missing:
            what = "; ".join(
                filter(
                    None,
                    [
                        f"unknown key(s) {sorted(unknown)}" if unknown else "",
                        f"missing key(s) {sorted(missing)}" if missing else "",
                    ],
                )
            )
            raise DataError(source, f"model {model!r}: {what} (expected input and output, USD per 1M tokens)")
        prices = {}
        for k in ("input", "output"):
            v = entry[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise DataError(
                    source, f"model {model!r}: {k} must be a non-negative number (USD per 1M tokens), got {v!r}"
                )
            prices[k] = float(v)
        table[str(model)] = prices
    return table


def price_for(model: str, table: PriceTable | None = None) -> Mapping[str, float] | None:
    """The price entry for ``model``: the exact name, else the name without a dated snapshot suffix
    (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``, ``gpt-3.5-turbo-0125`` → ``gpt-3.5-turbo``),
    ignoring a ``provider/`` prefix. Anything else is unknown: no price is better than a wrong one."""
    table = DEFAULT_PRICES if table is None else table
    names = [model, model.rsplit("/", 1)[-1]]
    names += [_SNAPSHOT.sub("", n) for n in names]
    for name in names:
        if name in table:
            return table[name]
    return None


def cost(model: str, prompt_tokens: int, completion_tokens: int, table: PriceTable | None = None) -> float | None:
    """USD for one call's tokens, or None for a model without a price (local server, unknown)."""
    p = price_for(model, table)
    if p is None:
        return None
    return (prompt_tokens * p["input"] + completion_tokens * p["output"]) / 1_000_000


def estimate_prompt_tokens(prompt: str | None = None, messages: list[dict[str, str]] | None = None) -> int:
    """A rough count (characters / 4, rounded up) for dry runs and rate limiting."""
    chars = len(prompt or "") + sum(len(str(m.get("content") or "")) for m in messages or [])
    return math.ceil(chars / 4)


def estimate_cost(
    model: str,
    requests: list[Any] | None = None,
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    table: PriceTable | None = None,
) -> dict[str, Any]:
    """An upper bound for a dry run: given token counts, and/or ``Request`` objects (prompt ≈ chars/4;
    every one of the n samples uses all ``max_tokens``; the prompt is billed once per request)."""
    for r in requests or []:
        prompt_tokens += estimate_prompt_tokens(r.prompt, r.messages)
        completion_tokens += r.n * r.max_tokens
    return {
        "model": model,
        "requests": len(requests or []),
        "prompt_tokens": prompt_tokens,
        "completion_tokens_max": completion_tokens,
        "cost_usd_max": cost(model, prompt_tokens, completion_tokens, table),
    }
