"""The audit report's plots as PNG bytes (matplotlib, Agg backend: no display needed).

Every plot has labelled axes and one tick per night (up to 16 nights; weekly beyond); an empty table draws
nothing (`None`): the report then says so in a sentence instead of drawing an empty or negative axis. Each
`*_figure` returns the matplotlib Figure (for tests), each `*_plot` its PNG bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VERDICT_COLOURS = (("safe", "#4c9a2a"), ("review", "#e0a800"), ("unsafe", "#c0392b"))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> Figure | None:
    """The figure as PNG bytes (closed afterwards); None stays None."""
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _png(make: Callable) -> Callable[..., bytes | None]:
    def plot(*args, **kwargs) -> bytes | None:
        return figure_png(make(*args, **kwargs))

    plot.__doc__ = f"PNG bytes of `{make.__name__}`."
    return plot


def _night_axis(ax, nights: Sequence[dt.date]) -> None:
    """Ticks on the nights themselves (`11-27`), half a night of margin either side."""
    import matplotlib.dates as mdates

    first, last = (dt.datetime.combine(d, dt.time()) for d in (min(nights), max(nights)))
    span = (last - first).days + 1
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=1 if span <= 16 else 7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.set_xlim(first - dt.timedelta(hours=12), last + dt.timedelta(hours=12))
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.set_xlabel("night (UTC)")


def _small_multiples(panels: int, max_cols: int, panel_size: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure with one panel per tenant, at most `max_cols` to a row: (figure, 2-D array of axes)."""
    cols = min(max_cols, panels)
    rows = (panels + cols - 1) // cols
    return _pyplot().subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False)


def mix_figure(mix: pl.DataFrame) -> Figure | None:
    """Per tenant, stacked bars per night: safe / review / unsafe units (not summed over the range)."""
    if mix.height == 0:
        return None
    tenants = mix["tenant"].unique(maintain_order=True).to_list()

    fig, axes = _small_multiples(len(tenants), 3, (4, 2.8))
    for ax, tenant in zip(axes.flat, tenants, strict=False):
        part = mix.filter(pl.col("tenant") == tenant).sort("date")
        nights = part["date"].to_list()
        bottom = [0] * part.height
        for column, colour in VERDICT_COLOURS:
            values = part[column].to_list()
            ax.bar(nights, values, bottom=bottom, label=column, color=colour, width=0.7)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(tenant, fontsize=9)
        ax.set_ylabel("units")
        _night_axis(ax, nights)
    for ax in list(axes.flat)[len(tenants) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def trend_figure(trend: pl.DataFrame) -> Figure | None:
    """Unsafe and review rate per tenant over nights; drift nights circled in red."""
    if trend.height == 0:
        return None
    nights = trend["date"].to_list()

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    groups = trend.group_by("tenant", maintain_order=True)
    for index, ((tenant,), rows) in enumerate(groups):
        rows = rows.sort("date")
        for ax, rate in zip(axes, ("unsafe_rate", "review_rate"), strict=True):
            ax.plot(rows["date"].to_list(), rows[rate].to_list(), marker=MARKERS[index % len(MARKERS)],
                    label=tenant, alpha=0.85)  # fmt: skip
            flagged = rows.filter(pl.col("drift"))
            ax.scatter(flagged["date"].to_list(), flagged[rate].to_list(), s=140, facecolors="none",
                       edgecolors="red", zorder=3)  # fmt: skip
    for ax, title in zip(axes, ("unsafe rate", "review rate"), strict=True):
        ax.set_title(title)
        ax.set_ylim(-0.05, 1.05)  # a rate of 0 or 1 stays visible, off the frame
        ax.set_ylabel("share of the night's units")
        ax.grid(alpha=0.3)
        _night_axis(ax, nights)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def histogram_figure(histogram: pl.DataFrame, threshold: float | None, bins: int = 10) -> Figure | None:
    """Small multiples: one P(unsafe) histogram per tenant, the decision threshold drawn."""
    if histogram.height == 0:
        return None
    tenants = histogram["tenant"].unique(maintain_order=True).to_list()

    fig, axes = _small_multiples(len(tenants), 4, (3.2, 2.6))
    for ax, tenant in zip(axes.flat, tenants, strict=False):
        part = histogram.filter(pl.col("tenant") == tenant)
        ax.bar(part["low"].to_list(), part["units"].to_list(), width=1 / bins, align="edge", edgecolor="white")
        if threshold is not None:
            ax.axvline(threshold, color="#c0392b", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_title(tenant, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(unsafe)")
        ax.set_ylabel("units")
    for ax in list(axes.flat)[len(tenants) :]:
        ax.axis("off")
    if threshold is not None:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def agreement_figure(over_time: pl.DataFrame) -> Figure | None:
    """Per tenant, Cohen's κ and raw agreement of reviewers with the guard, per day labels were imported."""
    if over_time.height == 0 or (over_time["kappa"].is_null().all() and over_time["agreement"].is_null().all()):
        return None
    days = over_time["date"].to_list()

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharex=True)
    for index, ((tenant,), rows) in enumerate(over_time.group_by("tenant_id", maintain_order=True)):
        for ax, column in zip(axes, ("agreement", "kappa"), strict=True):
            ax.plot(rows["date"].to_list(), rows[column].to_list(), marker=MARKERS[index % len(MARKERS)],
                    label=tenant)  # fmt: skip
    for ax, title, low in zip(axes, ("agreement with the guard", "Cohen's κ"), (-0.05, -1.05), strict=True):
        ax.set_title(title)
        ax.set_ylim(low, 1.05)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        _night_axis(ax, days)
        ax.set_xlabel("day labelled (UTC)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


mix_plot = _png(mix_figure)
trend_plot = _png(trend_figure)
histogram_plot = _png(histogram_figure)
agreement_plot = _png(agreement_figure)
