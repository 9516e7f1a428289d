"""The chart every benchmark draws with ``--plot FILE.png``: one bar per row, its baseline marked.

Not a benchmark itself (``make bench`` runs ``bench/[a-z]*.py``, so this file is skipped). A ratio
to a baseline is quicker to see than to read off a table: each bar is labelled with its value, and
the goals (for example "0.5x no-op") are drawn as dashed lines across the bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["bar_chart"]

#: Bars of a baseline (the row every ratio is measured against) are grey; the others blue.
_BAR, _BASELINE, _GOAL = "#3b6ea8", "#9a9a9a", "#c0392b"


def bar_chart(
    path: Path,
    title: str,
    bars: Sequence[tuple[str, float]],
    unit: str,
    baselines: Sequence[str] = (),
    goals: Sequence[tuple[str, float]] = (),
) -> Path:
    """Write a horizontal bar chart of ``bars`` (label, value in ``unit``) to ``path`` (PNG).

    ``baselines`` names the bars drawn grey; ``goals`` are (label, value) dashed lines.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    labels = [label for label, _ in bars]
    values = [value for _, value in bars]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.6))
    colours = [_BASELINE if label in baselines else _BAR for label in labels]
    ax.barh(labels, values, color=colours)
    ax.invert_yaxis()  # the first row of the table on top
    widest = max([*values, *(v for _, v in goals), 0.0])
    for y, value in enumerate(values):
        ax.text(value + widest * 0.01, y, _label(value), va="center", fontsize=9)
    right = widest * 1.15 or 1.0
    for label, value in goals:
        ax.axvline(value, color=_GOAL, linestyle="--", linewidth=1)
        left_of_line = value > 0.6 * right  # a label past the line would run off the chart
        text, align = (f"{label} ", "right") if left_of_line else (f" {label}", "left")
        ax.text(value, len(bars) - 0.4, text, color=_GOAL, fontsize=8, va="bottom", ha=align)
    ax.set_xlim(0, right)
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")
    return path


def _label(value: float) -> str:
    """14,567 / 68.3 / 0.17: thousands separated, about three significant digits below 100."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
