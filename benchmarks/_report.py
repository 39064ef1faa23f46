"""Statistics, tables (console and markdown) and PNG charts.

Latencies are summarized as count, errors, median, p90, p99, max and spread, never as an
average. *Spread* is the interquartile range as a share of the median (``IQR / median``):
how much a typical sample strays, robust to the outliers a loaded machine produces. A
ratio measured once per round is reported as its median and its ``[min-max]`` range.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = (
    "STATS_COLUMNS",
    "Stats",
    "Table",
    "bar_chart",
    "fmt_ms",
    "fmt_ratio",
    "line_chart",
    "percentile",
    "ratio_summary",
    "stats_row",
    "summarize",
)

STATS_COLUMNS = ["count", "errors", "median", "p90", "p99", "max", "spread"]


def percentile(ordered: Sequence[float], share: float) -> float:
    """The ``share`` (0-1) percentile of sorted samples, interpolated linearly."""
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Stats:
    """A summary of latency samples, in milliseconds (or of any other unit given)."""

    count: int
    errors: int
    median: float
    p90: float
    p99: float
    max: float
    spread: float  # IQR / median

    def cells(self, unit: str = "ms") -> list[str]:
        """The table cells, in ``STATS_COLUMNS`` order."""
        values = [self.median, self.p90, self.p99, self.max]
        spread = "-" if math.isnan(self.spread) else f"{self.spread * 100:.0f}%"
        return [str(self.count), str(self.errors), *(fmt_ms(v, unit) for v in values), spread]


def summarize(samples: Sequence[float], errors: int = 0, scale: float = 1000.0) -> Stats:
    """Summarize samples given in seconds (``scale`` converts: 1000 gives milliseconds)."""
    ordered = sorted(value * scale for value in samples)
    if not ordered:
        return Stats(0, errors, math.nan, math.nan, math.nan, math.nan, math.nan)
    median = statistics.median(ordered)
    iqr = percentile(ordered, 0.75) - percentile(ordered, 0.25)
    return Stats(
        count=len(ordered),
        errors=errors,
        median=median,
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
        spread=iqr / median if median else math.nan,
    )


def fmt_ms(value: float, unit: str = "ms") -> str:
    """A value with 3 significant figures (``-`` for missing)."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def ratio_summary(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Median, minimum and maximum of per-round ratios (NaN when there are none)."""
    clean = [r for r in ratios if not math.isnan(r)]
    if not clean:
        return math.nan, math.nan, math.nan
    return statistics.median(clean), min(clean), max(clean)


def fmt_ratio(ratios: Sequence[float]) -> str:
    """``1.23x [1.10-1.40]``: the median ratio and its range over rounds."""
    median, low, high = ratio_summary(ratios)
    if math.isnan(median):
        return "-"
    if len(ratios) == 1 or low == high:
        return f"{median:.2f}x"
    return f"{median:.2f}x [{low:.2f}-{high:.2f}]"


@dataclass
class Table:
    """A table for the console and for RESULTS.md."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        """The table as GitHub markdown, with its title and note."""
        lines = [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        aligns = ["---" if i == 0 else "---:" for i in range(len(self.columns))]
        lines.append("| " + " | ".join(aligns) + " |")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)

    def console(self) -> str:
        """The table as aligned plain text."""
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [self.title, fmt.format(*self.columns)]
        lines.extend(fmt.format(*row) for row in self.rows)
        return "\n".join(lines)


def stats_row(label: str, what: str, stats: Stats, unit: str = "ms") -> list[str]:
    """One row of a stats table: the system, what was measured, then the statistics."""
    return [label, what, *stats.cells(unit)]


def stats_columns(unit: str = "ms") -> list[str]:
    """The header of a stats table."""
    return ["system", "measure", "count", "errors", f"median {unit}", f"p90 {unit}",
            f"p99 {unit}", f"max {unit}", "spread"]  # fmt: skip


# -- charts ---------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "matplotlib is not installed: no charts (pip install matplotlib)", stacklevel=3
        )
        return None
    return plt


def _log_axis(axis: Any) -> None:
    """Plain numbers on a log axis (no 2x10^-1 labels, no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: fmt_ms(value)))
    axis.set_minor_formatter(NullFormatter())


def _save(plt: Any, fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_chart(
    path: Path,
    title: str,
    panels: list[tuple[str, dict[str, dict[str, float]], bool]],
) -> Path | None:
    """Grouped horizontal bars, one panel per ``(y label, {group: {series: value}}, log)``.

    Each panel groups bars by system (``group``) and colours them by measure (``series``);
    lower is better unless the label says otherwise.
    """
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), squeeze=False)
    for ax, (label, groups, log) in zip(axes[0], panels, strict=False):
        names = list(groups)
        series = list(dict.fromkeys(s for values in groups.values() for s in values))
        height = 0.8 / max(1, len(series))
        for index, name in enumerate(series):
            values = [groups[g].get(name, math.nan) for g in names]
            offsets = [i + (index - (len(series) - 1) / 2) * height for i in range(len(names))]
            bars = ax.barh(offsets, values, height=height, label=name)
            ax.bar_label(bars, labels=[fmt_ms(v) for v in values], fontsize=7, padding=2)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if log:
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    fig.suptitle(title, fontsize=11)
    return _save(plt, fig, path)


def line_chart(
    path: Path,
    title: str,
    panels: list[tuple[str, str, dict[str, tuple[Sequence[float], Sequence[float]]], bool]],
    smooth: Callable[[Sequence[float]], Sequence[float]] | None = None,
) -> Path | None:
    """Lines, one panel per ``(x label, y label, {series: (xs, ys)}, log y)``."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False)
    for ax, (xlabel, ylabel, lines, log) in zip(axes[0], panels, strict=False):
        for name, (xs, ys) in lines.items():
            ax.plot(xs, smooth(ys) if smooth else ys, label=name, linewidth=1.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
            _log_axis(ax.yaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(plt, fig, path)


def rolling_median(values: Sequence[float], width: int = 9) -> list[float]:
    """A centred rolling median, to show a trend through a noisy per-turn series."""
    half = width // 2
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]
