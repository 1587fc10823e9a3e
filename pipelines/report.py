"""The audit report: one self-contained HTML file (plots embedded), and/or Markdown with its PNGs beside it.

    python -m pipelines.report OUT --html report.html [--md report.md] [--since DAY] [--until DAY]
        [--drift-threshold 0.10] [--drift-window 7]

Sections: verdict mix per tenant and day; the trend over nights with drift flags; P(unsafe) histograms per
tenant; category counts; the newest review-queue items with their reasoning; dead letters by kind; tokens per
tenant (cost attribution); model and policy versions in use and where they changed; reviewers' labels
(`python -m pipelines.review`) against the guard. The queries are
`pipelines.report_queries` (Polars); the plots are matplotlib (Agg backend, no display needed).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines import report_queries as q
from pipelines.review import agreement, scan_labels

SECTIONS = (
    ("mix", "Verdict mix per tenant and day"),
    ("trend", "Trend over nights and drift"),
    ("p-unsafe", "P(unsafe) per tenant"),
    ("categories", "Categories of unsafe units: named by the guard, scored by its category heads"),
    ("review", "Review queue (newest first)"),
    ("dead-letters", "Dead letters by kind"),
    ("cost", "Tokens per tenant (cost attribution)"),
    ("versions", "Models and policy versions in use"),
    ("consistency", "Rationale consistency flags"),
    ("labels", "Reviewer labels: agreement with the guard"),
)


def _figure_png(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def trend_plot(trend: pl.DataFrame) -> bytes:
    """Unsafe and review rate per tenant over nights; drift nights marked."""

    def draw(plt):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
        for (tenant,), rows in trend.group_by("tenant", maintain_order=True):
            for ax, rate in zip(axes, ("unsafe_rate", "review_rate"), strict=True):
                ax.plot(rows["date"].to_list(), rows[rate].to_list(), marker="o", label=tenant)
                flagged = rows.filter(pl.col("drift"))
                ax.scatter(flagged["date"].to_list(), flagged[rate].to_list(), s=120, facecolors="none",
                           edgecolors="red")  # fmt: skip
        for ax, title in zip(axes, ("unsafe rate", "review rate"), strict=True):
            ax.set_title(title)
            ax.set_ylim(0, 1)
            ax.tick_params(axis="x", rotation=45)
        axes[0].legend(fontsize=7)
        return fig

    return _figure_png(draw)


def histogram_plot(histogram: pl.DataFrame, bins: int = 10) -> bytes:
    """Small multiples: one P(unsafe) histogram per tenant."""
    tenants = histogram["tenant"].unique(maintain_order=True).to_list() or ["(none)"]

    def draw(plt):
        cols = min(4, len(tenants))
        rows = (len(tenants) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
        for ax, tenant in zip(axes.flat, tenants, strict=False):
            part = histogram.filter(pl.col("tenant") == tenant)
            ax.bar(part["low"].to_list(), part["units"].to_list(), width=1 / bins, align="edge")
            ax.set_title(tenant, fontsize=9)
            ax.set_xlim(0, 1)
        for ax in list(axes.flat)[len(tenants) :]:
            ax.axis("off")
        return fig

    return _figure_png(draw)


def mix_plot(mix: pl.DataFrame) -> bytes:
    """Stacked bars: safe / review / unsafe units per tenant over the whole range."""
    totals = mix.group_by("tenant", maintain_order=True).agg(pl.col("safe", "review", "unsafe").sum())

    def draw(plt):
        fig, ax = plt.subplots(figsize=(8, 3))
        bottom = [0] * totals.height
        for column, colour in (("safe", "#4c9a2a"), ("review", "#e0a800"), ("unsafe", "#c0392b")):
            values = totals[column].to_list()
            ax.bar(totals["tenant"].to_list(), values, bottom=bottom, label=column, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.legend()
        ax.set_ylabel("units")
        return fig

    return _figure_png(draw)


def build_report(output: str, since: str | None = None, until: str | None = None, window: int = 7,
                 threshold: float = 0.10) -> dict:  # fmt: skip
    """Every section's table (and the plots' PNG bytes) for `output`."""
    scanned = q.scan_output(output, since, until)
    mix = q.verdict_mix(scanned.verdicts)
    trend = q.drift(mix, window, threshold)
    histogram = q.p_unsafe_histogram(scanned.verdicts)
    tables = {
        "mix": mix,
        "trend": trend.filter(pl.col("drift")) if trend["drift"].any() else trend.tail(20),
        "p-unsafe": histogram.pivot(on="tenant", index="low", values="units").sort("low").fill_null(0)
        if histogram.height
        else histogram,
        "categories": q.category_counts(scanned.verdicts),
        "review": q.review_queue(scanned.verdicts),
        "dead-letters": q.dead_letters_by_kind(scanned.errors),
        "cost": q.cost_by_tenant(scanned.verdicts),
        "versions": q.versions_in_use(scanned.verdicts),
        "consistency": q.consistency_flags(scanned.verdicts),
        "labels": agreement(scan_labels(output)),
    }
    plots = {"mix": mix_plot(mix), "trend": trend_plot(trend), "p-unsafe": histogram_plot(histogram)}
    drifting = trend.filter(pl.col("drift")).select("tenant", "date").rows()
    return {"tables": tables, "plots": plots, "drift": drifting, "units": int(mix["units"].sum())}


def _html_table(frame: pl.DataFrame, limit: int = 200) -> str:
    if frame.height == 0:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.head(limit).iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "" if value is None else str(value)


def render_html(report: dict, title: str) -> str:
    """The report as one HTML page: no external file, script or font."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}th{background:#eee}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{report['units']} units; drift on "
             f"{len(report['drift'])} tenant-night(s).</p>"]  # fmt: skip
    for key, heading in SECTIONS:
        parts.append(f"<section id='{key}'><h2>{html.escape(heading)}</h2>")
        if key in report["plots"]:
            data = base64.b64encode(report["plots"][key]).decode()
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
        parts.append(_html_table(report["tables"][key]) + "</section>")
    return "".join(parts) + "</body></html>"


def _md_table(frame: pl.DataFrame, limit: int = 200) -> str:
    if frame.height == 0:
        return "_none_\n"
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.head(limit).iter_rows():
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(report: dict, path: Path, title: str) -> None:
    """Markdown with the plots as PNG files in `<name>_files/` beside it."""
    assets = path.with_name(path.stem + "_files")
    assets.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n\n{report['units']} units; drift on {len(report['drift'])} tenant-night(s).\n"]
    for key, heading in SECTIONS:
        parts.append(f"\n## {heading}\n")
        if key in report["plots"]:
            (assets / f"{key}.png").write_bytes(report["plots"][key])
            parts.append(f"![{heading}]({assets.name}/{key}.png)\n")
        parts.append(_md_table(report["tables"][key]))
    path.write_text("\n".join(parts), encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    """The report command's options."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.report", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the job's output folder (OUT)")
    parser.add_argument("--html", help="write the self-contained HTML report here")
    parser.add_argument("--md", help="write the Markdown report here (PNGs in <name>_files/)")
    parser.add_argument("--since", help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--until", help="last UTC day (YYYY-MM-DD)")
    parser.add_argument("--drift-window", type=int, default=7, help="nights in the trailing mean")
    parser.add_argument("--drift-threshold", type=float, default=0.10, help="absolute rate change that is drift")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.html or args.md):
        parser.error("give --html and/or --md")
    if not list(Path(args.output).glob("verdicts/**/*.parquet")) and "://" not in args.output:
        parser.error(f"{args.output}: no verdict files under verdicts/ (is it the job's output folder?)")
    started = time.monotonic()
    report = build_report(args.output, args.since, args.until, args.drift_window, args.drift_threshold)
    title = f"rsafe-batch audit report: {args.output}"
    if args.html:
        Path(args.html).write_text(render_html(report, title), encoding="utf-8")
    if args.md:
        write_markdown(report, Path(args.md), title)
    print(f"report of {report['units']} units in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
