"""Report plots (PNG via matplotlib's Agg canvas; pyplot and its global state are never touched).

Each function takes result rows (see :mod:`cotbridge.reporting.tables`), writes one PNG and returns its path; rows
that carry nothing to plot raise ValueError. Error bars are ± one standard error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotbridge.fileio import replacing
from cotbridge.reporting.rows import Row, check_rows, finite_or_none, format_params, row_labels, unique

DPI = 150


def figure(figsize: tuple[float, float], ncols: int = 1, sharey: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, axes


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    with replacing(path, binary=True) as f:  # a full disk leaves the previous plot, not half a PNG
        fig.savefig(f, dpi=dpi, format="png")
    return path


def _pct(r: Row) -> tuple[float, float]:
    se = finite_or_none(r.get("stderr"))
    return 100 * r["accuracy"], 100 * se if se is not None else 0.0


def _plottable(rows: list[Row]) -> list[Row]:
    return [r for r in check_rows(rows) if finite_or_none(r.get("accuracy")) is not None]


def _y_top(values: list[tuple[float, float]]) -> float:
    return min(105.0, max(v + e for v, e in values) * 1.12 + 2)


def _legend_width(labels: list[str]) -> float:
    """Inches an outside legend of these labels takes (small font), to widen the figure by."""
    return 0.8 + 0.065 * max((len(lab) for lab in labels), default=0)


def _legend(fig, ax, handles: list[tuple[Any, str]], outside: bool) -> None:
    """A legend in drawing order, deduplicated by label: inside the axes, or outside on the right."""
    by_label = {lab: h for h, lab in reversed(handles)}  # first handle per label
    by_label = {lab: by_label[lab] for _, lab in handles}
    if outside:
        fig.legend(by_label.values(), by_label.keys(), loc="outside right upper", frameon=False, fontsize="small")
    elif by_label:
        ax.legend(by_label.values(), by_label.keys(), frameon=False, fontsize="small")


def plot_accuracy_by_method(
    rows: list[Row],
    path: str | Path,
    task: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """Grouped bars: one group per task, one bar per method (one task: a bar per method)."""
    rows = check_rows(rows)
    labels = row_labels(rows)
    pairs = [
        (lab, r)
        for lab, r in zip(labels, rows)
        if finite_or_none(r.get("accuracy")) is not None and (task is None or r["task"] == task)
    ]
    if not pairs:
        known = unique(r["task"] for r in rows)
        raise ValueError(
            f"no accuracy to plot for task {task!r} (tasks: {known})"
            if task is not None
            else "no result row has an accuracy to plot"
        )
    methods = unique(lab for lab, _ in pairs)
    tasks = unique(r["task"] for _, r in pairs)
    cell = {(lab, r["task"]): _pct(r) for lab, r in pairs}
    colors = _colors(len(methods))
    if len(tasks) == 1:
        fig, (ax,) = figure(figsize or (max(5.0, 1.5 + 0.8 * len(methods)), 4.5))
        vals = [cell[(m, tasks[0])] for m in methods]
        ax.bar(
            range(len(methods)), [v for v, _ in vals], yerr=[e for _, e in vals], capsize=4, color=colors, width=0.6
        )
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlabel("Method")
        ax.set_title(f"Accuracy by method — {tasks[0]}")
        rotate = max(len(m) for m in methods) * len(methods) > 60
    else:
        width = 0.8 / len(methods)
        plot_w = min(14.0, max(5.0, 1.5 + len(tasks) * (0.3 * len(methods) + 0.6)))
        fig, (ax,) = figure(figsize or (plot_w + _legend_width(methods), 4.5))
        handles = []
        for i, (m, color) in enumerate(zip(methods, colors)):
            xs = [j for j, t in enumerate(tasks) if (m, t) in cell]
            vals = [cell[(m, tasks[j])] for j in xs]
            handles.append(
                (
                    ax.bar(
                        [x - 0.4 + width * (i + 0.5) for x in xs],
                        [v for v, _ in vals],
                        width=width,
                        yerr=[e for _, e in vals],
                        capsize=3,
                        color=color,
                    ),
                    m,
                )
            )
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_xlabel("Task")
        ax.set_title("Accuracy by method")
        rotate = max(len(t) for t in tasks) * len(tasks) > 60
        _legend(fig, ax, handles, outside=True)  # a legend inside would hide bars
    if rotate:
        ax.tick_params(axis="x", labelrotation=30)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, _y_top(list(cell.values())))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return save_figure(fig, path, dpi)


def _series(rows: list[Row], x_key: str, keys: list[str], extra: list[str]) -> dict[tuple, list[Row]]:
    """Group rows into lines by ``keys`` (plus any of ``extra`` needed so no line has two points at one x)."""
    for k in extra:
        if len({r.get(k) for r in rows}) > 1:
            groups: dict[tuple, list[Row]] = {}
            for r in rows:
                groups.setdefault(tuple(r.get(key) for key in keys), []).append(r)
            if all(len({r[x_key] for r in g}) == len(g) for g in groups.values()):
                break
            keys = keys + [k]
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r.get(key) for key in keys), []).append(r)
    for key, g in groups.items():
        xs = [r[x_key] for r in g]
        if len(set(xs)) != len(xs):
            raise ValueError(f"two result rows for {dict(zip(keys, key))} at {x_key}={max(xs, key=xs.count)}")
    return {k: sorted(g, key=lambda r: r[x_key]) for k, g in groups.items()}


def _series_label(key: tuple, keys_varying: list[bool]) -> str:
    return " · ".join(str(k) for k, vary in zip(key, keys_varying) if vary) or str(key[0])


def _log_xticks(ax, xs: list[float], base: int, fmt) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=base)
    ax.set_xticks(xs, [fmt(x) for x in xs])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(xs) == 1:
        ax.set_xlim(xs[0] / base, xs[0] * base)


def plot_accuracy_vs_degree(
    rows: list[Row], path: str | Path, figsize: tuple[float, float] | None = None, dpi: int = DPI
) -> Path:
    """Accuracy vs diverse-reasoning degree D (log2 x axis), one line per task; rows of the same tasks
    without a degree (prompted or vanilla baselines) are drawn as dashed horizontal lines."""
    rows = _plottable(rows)
    pts = [r for r in rows if r.get("degree") is not None]
    if not pts:
        raise ValueError("no result row carries a diverse-reasoning degree ('degree'): nothing to plot vs D")
    if any(int(r["degree"]) < 1 for r in pts):
        raise ValueError("diverse-reasoning degrees must be >= 1 for a log2 axis")
    groups = _series(pts, "degree", ["task"], ["student", "method"])
    keys = list(groups)
    varying = [len({k[i] for k in keys}) > 1 for i in range(len(keys[0]))]
    tasks = unique(r["task"] for r in pts)
    colors = dict(zip(keys, _colors(len(keys))))
    base = [(lab, r) for lab, r in zip(row_labels(rows), rows) if r.get("degree") is None and r["task"] in tasks]
    names = [_series_label(key, varying) for key in keys]
    names += [lab + (f" · {r['task']}" if len(tasks) > 1 else "") for lab, r in base]
    outside = len(names) > 4
    fig, (ax,) = figure(figsize or (6.5 + (_legend_width(names) if outside else 0.0), 4.5))
    shown: list[tuple[float, float]] = []
    handles = []
    for (key, g), name in zip(groups.items(), names):
        vals = [_pct(r) for r in g]
        shown += vals
        handles.append(
            (
                ax.errorbar(
                    [r["degree"] for r in g],
                    [v for v, _ in vals],
                    yerr=[e for _, e in vals],
                    marker="o",
                    capsize=3,
                    color=colors[key],
                ),
                name,
            )
        )
    styles = ["--", ":", "-."]
    for i, ((_, r), name) in enumerate(zip(base, names[len(keys) :])):
        color = (
            next(c for k, c in colors.items() if k[0] == r["task"])
            if len(tasks) > 1
            else _colors(len(keys) + len(base))[len(keys) + i]
        )
        v, _ = _pct(r)
        shown.append((v, 0.0))
        handles.append((ax.axhline(v, linestyle=styles[i % len(styles)], color=color, alpha=0.7, linewidth=1.2), name))
    _log_xticks(ax, sorted({int(r["degree"]) for r in pts}), 2, lambda d: str(d))
    ax.set_xlabel("Diverse-reasoning degree D (log scale)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, _y_top(shown))
    ax.set_title("Accuracy vs diverse-reasoning degree" + (f" — {tasks[0]}" if len(tasks) == 1 else ""))
    ax.grid(alpha=0.3)
    if len(names) > 1:
        _legend(fig, ax, handles, outside=outside)
    return save_figure(fig, path, dpi)


def plot_accuracy_vs_student_size(
    rows: list[Row], path: str | Path, figsize: tuple[float, float] | None = None, dpi: int = DPI
) -> Path:
    """Accuracy vs student parameter count (log x axis), one line per method; one panel per task."""
    pts = [r for r in _plottable(rows) if r.get("student_params") is not None]
    if not pts:
        raise ValueError("no result row carries a student size ('student_params'): nothing to plot vs size")
    if any(int(r["student_params"]) <= 0 for r in pts):
        raise ValueError("student_params must be positive for a log axis")
    tasks = unique(r["task"] for r in pts)
    groups = _series(pts, "student_params", ["task", "method"], ["degree"])
    lines = unique(key[1:] for key in groups)
    colors = dict(zip(lines, _colors(len(lines))))
    names = {line: line[0] + (f" (D={line[1]})" if len(line) > 1 and line[1] is not None else "") for line in lines}
    outside = len(tasks) > 1 or len(lines) > 4
    width = min(14.0, 1.5 + 4.0 * len(tasks)) + (_legend_width(list(names.values())) if outside else 0.0)
    fig, axes = figure(figsize or (width, 4.5), ncols=len(tasks), sharey=True)
    shown: list[tuple[float, float]] = []
    handles = []
    for ax, task in zip(axes, tasks):
        for key, g in groups.items():
            if key[0] != task:
                continue
            vals = [_pct(r) for r in g]
            shown += vals
            handles.append(
                (
                    ax.errorbar(
                        [r["student_params"] for r in g],
                        [v for v, _ in vals],
                        yerr=[e for _, e in vals],
                        marker="o",
                        capsize=3,
                        color=colors[key[1:]],
                    ),
                    names[key[1:]],
                )
            )
        _log_xticks(ax, sorted({int(r["student_params"]) for r in pts if r["task"] == task}), 10, format_params)
        ax.set_xlabel("Student parameters (log scale)")
        ax.set_title(task if len(tasks) > 1 else f"Accuracy vs student size — {task}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Accuracy (%)")
    axes[0].set_ylim(0, _y_top(shown))
    if len(tasks) > 1:
        fig.suptitle("Accuracy vs student size")
    if outside or len(lines) > 1:
        handles.sort(key=lambda hn: list(names.values()).index(hn[1]))
        _legend(fig, axes[0], handles, outside=outside)
    return save_figure(fig, path, dpi)
