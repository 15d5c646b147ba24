"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """Bad input from the user (unknown name, malformed file, missing path)."""


class DataError(UserError):
    """A data file is malformed; the message names the file and, where known, the line."""

    def __init__(self, path: object, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


def range_words(bounds: dict[str, float]) -> str:
    """A numeric range in words, as pydantic words one bound: ``{"ge": 0, "le": 1}`` -> "greater than or equal to 0
    and less than or equal to 1" (what an out-of-range option or config key is told it must be)."""
    words = {"ge": "greater than or equal to", "gt": "greater than", "le": "less than or equal to", "lt": "less than"}
    return " and ".join(f"{words[op]} {bounds[op]}" for op in words if op in bounds)


def range_short(bounds: dict[str, float]) -> str:
    """The same range as ``--help`` shows it (click's notation): ``0<=x<=1``, ``x>=1``, ``0<x``."""
    low = f"{bounds['ge']}<=" if "ge" in bounds else f"{bounds['gt']}<" if "gt" in bounds else ""
    high = f"<={bounds['le']}" if "le" in bounds else f"<{bounds['lt']}" if "lt" in bounds else ""
    if not high and low:
        return "x" + (f">={bounds['ge']}" if "ge" in bounds else f">{bounds['gt']}")
    return f"{low}x{high}"
