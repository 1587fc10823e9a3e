"""The audit report: one self-contained HTML file (plots embedded), and/or Markdown with its PNGs beside it.

    python -m pipelines.report OUT --html report.html [--md report.md] [--since DAY] [--until DAY]
        [--input 'logs/*.parquet']... [--drift-threshold 0.10] [--drift-window 7]

The header says which nights, runs, models, policy and calibration versions it covers. Sections: verdict mix per
tenant and night; the trend over nights with drift flags; P(unsafe) histograms per tenant with the threshold;
the flagged units per tenant and night (messages, verdict, P, who decided, categories and the reasoning trace;
filterable and sortable in the page, linked from every plot); category counts; the newest review-queue items;
dead letters by kind; tokens per tenant (cost attribution); model and policy versions in use and where they
changed; rationale consistency flags; reviewers' labels (`python -m pipelines.review`) against the guard, with
Cohen's κ over time. An empty section says why in a sentence. The messages are read from the logs the run read
(`source_file`, relative to where the run started) or `--input`. The queries are `pipelines.audit.report_queries`
(Polars); the plots `pipelines.audit.report_plots`; the layout `pipelines.audit.report_html`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.audit import report_queries as q
from pipelines.audit.cli import (
    AuditParser,
    MissingInputError,
    check_day_range,
    check_target,
    fraction,
    positive_int,
    require_verdicts,
    run_politely,
    utc_day,
)
from pipelines.audit.label_agreement import agreement, agreement_over_time, scan_labels
from pipelines.audit.report_html import SECTIONS, render_html, write_markdown
from pipelines.audit.report_plots import agreement_plot, histogram_plot, mix_plot, trend_plot
from pipelines.audit.review import conversation_texts
from transforms.io.read_logs import InputError, match_input_files

__all__ = ["SECTIONS", "build_report", "main", "render_html", "write_markdown"]  # the layout's, re-exported
MESSAGE_CHARS = 300  # each message shown in the Flagged section is cut to this
MESSAGES_SHOWN = 6  # the judged message and the ones before it


def run_settings(output: str, run_ids: Sequence[str]) -> dict[str, dict]:
    """run id → its manifest's `judge_settings` (runs whose manifest is not readable here are left out)."""
    found = {}
    for run_id in run_ids:
        path = Path(output) / "_runs" / f"{run_id}.json"
        try:
            found[run_id] = json.loads(path.read_text()).get("judge_settings") or {}
        except (OSError, ValueError):
            continue
    return found


def header(runs: pl.DataFrame, settings: dict[str, dict], since: str | None, until: str | None) -> dict[str, str]:
    """What the report covers: nights, runs, models, policy and calibration versions, threshold."""

    def joined(column: str) -> str:
        values = sorted({v for vs in runs[column].to_list() for v in vs})
        return ", ".join(values) or "none"

    asked = f" (asked: {since or 'start'} – {until or 'end'})" if since or until else ""
    if runs.height == 0:
        return {"nights": f"none{asked}", "runs": "none"}
    thresholds = sorted({s.get("threshold") for s in settings.values() if s.get("threshold") is not None})
    bands = sorted({str(s.get("review_band")) for s in settings.values() if s.get("review_band")})
    return {
        "nights": f"{runs['first_day'].min()} – {runs['last_day'].max()}{asked}",
        "runs": "; ".join(
            f"{r} ({n} units, {a} – {b})"
            for r, a, b, n in runs.select("run_id", "first_day", "last_day", "units").iter_rows()
        ),
        "models": joined("models"),
        "policies": joined("policies"),
        "calibration": joined("calibrations") if joined("calibrations") != "none" else "none (raw P(unsafe))",
        "threshold": ", ".join(f"{t:g}" for t in thresholds) or "unknown (no manifest read)",
        "review band": ", ".join(bands) or "none",
    }


def with_messages(flagged: pl.DataFrame, patterns: Sequence[str]) -> pl.DataFrame:
    """The flagged rows with `messages` (the judged message and up to 5 before it, cut, the judged one marked) read
    from `patterns` (else the rows' own source files, where they exist here), and `messages_note` when absent."""
    sources = list(patterns) or sorted(
        {p for p in flagged["source_file"].unique().to_list() if p and Path(p).is_file()}
    )
    texts, note = {}, "logs not found here: give --input"
    if sources and flagged.height:
        try:
            texts = conversation_texts(sources, set(flagged["conversation_id"]))
        except InputError as exc:
            note = f"logs not readable: {exc}"
    shown, notes = [], []
    for row in flagged.iter_rows(named=True):
        lines = texts.get((row["tenant"], row["conversation_id"]))
        kept = None if lines is None else [(i, t) for i, t in lines if i <= row["turn_index"]][-MESSAGES_SHOWN:]
        cut = [
            (t if len(t) <= MESSAGE_CHARS else t[:MESSAGE_CHARS] + "…", i == row["turn_index"]) for i, t in kept or []
        ]
        shown.append(cut or None)
        notes.append(None if cut else note if lines is None else "no message up to the judged turn")
    # (text, judged) pairs, as Python objects: the layout reads them row by row
    return flagged.with_columns(pl.Series("messages", shown, dtype=pl.Object), pl.Series("messages_note", notes))


def build_report(output: str, since: str | None = None, until: str | None = None, window: int = 7,
                 threshold: float = 0.10, patterns: Sequence[str] = ()) -> dict:  # fmt: skip
    """Every section's table, the plots' PNG bytes (None when there is nothing to draw), the sentences said
    instead of an empty table, and the header, for `output`."""
    scanned = q.scan_output(output, since, until)
    mix = q.verdict_mix(scanned.verdicts)
    trend = q.drift(mix, window, threshold)
    histogram = q.p_unsafe_histogram(scanned.verdicts)
    runs = q.runs_covered(scanned.verdicts)
    settings = run_settings(output, runs["run_id"].to_list())
    labels = scan_labels(output)
    flagged = with_messages(q.flagged_units(scanned.verdicts), patterns)
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
        "labels": agreement(labels),
    }
    over_time = agreement_over_time(labels)
    thresholds = {s.get("threshold") for s in settings.values()} or {0.5}
    plots = {
        "mix": mix_plot(mix),
        "trend": trend_plot(trend),
        "p-unsafe": histogram_plot(histogram, thresholds.pop() if len(thresholds) == 1 else None),
        "labels": agreement_plot(over_time),
    }
    if over_time.height:
        overall = tables["labels"].with_columns(date=pl.lit(None, pl.Date))  # the whole range: no date
        columns = ["tenant_id", "date", *tables["labels"].columns[1:]]
        tables["labels"] = pl.concat([overall, over_time], how="diagonal_relaxed").select(columns)
    groups = flagged.group_by("tenant", "date", maintain_order=True).agg(units=pl.len())
    return {
        "tables": tables, "plots": plots, "flagged": flagged, "flagged_groups": groups,
        "notes": empty_notes(tables, flagged, mix, settings, since, until),
        "header": header(runs, settings, since, until),
        "drift": trend.filter(pl.col("drift")).select("tenant", "date").rows(), "units": int(mix["units"].sum()),
    }  # fmt: skip


def empty_notes(tables: dict, flagged: pl.DataFrame, mix: pl.DataFrame, settings: dict[str, dict],
                since: str | None, until: str | None) -> dict[str, str]:  # fmt: skip
    """The sentence each empty section says instead of an empty table or plot."""
    notes = {}
    if mix.height == 0:
        where = f" between {since or 'the start'} and {until or 'the end'}" if since or until else ""
        for key in ("mix", "trend", "p-unsafe"):
            notes[key] = f"No verdict{where}: nothing to plot."
    if flagged.height == 0:
        notes["flagged"] = "No unit was flagged unsafe in this range."
    if tables["categories"].height == 0:
        notes["categories"] = ("No unsafe unit has a category: the guard named none (the rsafe-categories template "
                               "names codes) and no category head scored one at or above 0.5.")  # fmt: skip
    if tables["review"].height == 0:
        bands = [s.get("review_band") for s in settings.values()]
        why = "the runs had no --review-band" if bands and not any(bands) else "no verdict fell in the review band"
        notes["review"] = (
            f"No unit was sent to review: {why}. The flagged units are listed above; to queue them for reviewers: "
            "python -m pipelines.review export OUT --all-unsafe --to queue.csv"
        )
    if tables["dead-letters"].height == 0:
        notes["dead-letters"] = "No dead letter: every input row was judged or accounted for."
    if tables["consistency"].height == 0:
        notes["consistency"] = "No reasoned verdict was flagged for a second look (thought_cut, score_disagrees)."
    if tables["labels"].height == 0:
        notes["labels"] = ("No reviewer label yet: python -m pipelines.review export, label the file, then "
                           "python -m pipelines.review import.")  # fmt: skip
    for key in ("cost", "versions"):
        if tables[key].height == 0:
            notes[key] = "No verdict in this range."
    return notes


def build_parser() -> argparse.ArgumentParser:
    """The report command's options."""
    parser = AuditParser(prog="python -m pipelines.report", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the job's output folder (OUT)")
    parser.add_argument("--html", help="write the self-contained HTML report here")
    parser.add_argument("--md", help="write the Markdown report here (PNGs in <name>_files/)")
    parser.add_argument("--since", type=utc_day, help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--until", type=utc_day, help="last UTC day (YYYY-MM-DD)")
    parser.add_argument("--input", action="append", default=[], help="the logs, for the flagged units' messages")
    parser.add_argument("--drift-window", type=positive_int, default=7, help="nights in the trailing mean")
    parser.add_argument("--drift-threshold", type=fraction, default=0.10, help="absolute rate change that is drift")
    return parser


def report_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The report command, after parsing."""
    if not (args.html or args.md):
        parser.error("give --html and/or --md")
    for option, path in (("--html", args.html), ("--md", args.md)):
        if path:
            check_target(option, path, {"--html": (".html", ".htm"), "--md": (".md",)}[option])
    check_day_range(args.since, args.until)
    require_verdicts(args.output)
    if args.input:
        try:
            match_input_files(args.input)
        except InputError as exc:
            raise MissingInputError(f"--input: {exc}") from exc
    started = time.monotonic()
    report = build_report(args.output, args.since, args.until, args.drift_window, args.drift_threshold, args.input)
    title = f"rsafe-batch audit report: {args.output}"
    if args.html:
        Path(args.html).write_text(render_html(report, title), encoding="utf-8")
    if args.md:
        write_markdown(report, Path(args.md), title)
    print(f"report of {report['units']} units ({report['flagged'].height} flagged) in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)  # fmt: skip
    if report["units"] == 0:
        print(f"note: {report['notes']['mix']}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_politely(parser.prog, lambda: report_command(parser, args))


if __name__ == "__main__":
    sys.exit(main())
