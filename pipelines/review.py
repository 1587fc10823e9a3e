"""The reviewer loop: export the review queue for human adjudication, import the reviewers' labels back.

    python -m pipelines.review export OUT --to queue.csv [--input 'logs/*.parquet']... [--tenant T]...
        [--since DAY] [--until DAY] [--limit N] [--all-unsafe]
    python -m pipelines.review import OUT --labels queue.csv [--reviewer NAME]

`export` writes one row per queued verdict (`verdict == review`, and with `--all-unsafe` the unsafe ones too):
its ids, the guard's verdict, P(unsafe) and reasoning, the conversation up to the judged turn (from `--input`, read
with the job's own reader and renderer), and empty `label` / `reviewer` / `note` columns to fill in. CSV or
Parquet (by the target's suffix).

`import` checks every filled-in row (label `safe` or `unsafe`; a resume key the output has published) and
publishes them atomically as `OUT/labels/date=<day>/part-*.parquet`; rows with no label are skipped and counted.
The audit report's "Reviewer labels" section reads them back (agreement with the guard per tenant, confusion).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

import polars as pl
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.report_queries import scan_output
from transforms.prompts import render_turn
from transforms.read_logs import match_input_files, read_conversations_from_file
from transforms.records import Conversation
from transforms.write_partitions import publish_table

LABELS = ("safe", "unsafe")
LABEL_SCHEMA = pa.schema(
    [
        ("resume_key", pa.string()),
        ("conversation_id", pa.string()),
        ("tenant_id", pa.string()),
        ("unit", pa.string()),
        ("turn_index", pa.int32()),
        ("label", pa.string()),
        ("reviewer", pa.string()),
        ("note", pa.string()),
        ("guard_verdict", pa.string()),
        ("guard_p_unsafe", pa.float64()),
        ("labelled_at", pa.timestamp("us", tz="UTC")),
    ]
)
QUEUE_COLUMNS = ("resume_key", "conversation_id", "tenant_id", "date", "unit", "turn_index", "verdict", "p_unsafe",
                 "policy_id", "reasoning")  # fmt: skip


class LabelError(ValueError):
    """A labels file row that cannot be imported; the message names the file, row and field."""


def review_queue_rows(output: str, tenants: Sequence[str] = (), since: str | None = None, until: str | None = None,
                      all_unsafe: bool = False, limit: int | None = None) -> pl.DataFrame:  # fmt: skip
    """The queued verdict rows, newest first."""
    verdicts = scan_output(output, since, until).verdicts
    wanted = ("review", "unsafe") if all_unsafe else ("review",)
    frame = verdicts.filter(pl.col("verdict").is_in(list(wanted)))
    if tenants:
        frame = frame.filter(pl.col("tenant_id").is_in(list(tenants)))
    frame = frame.sort("processed_at", descending=True).select(*QUEUE_COLUMNS)
    return (frame.head(limit) if limit else frame).collect()


def conversation_texts(patterns: Sequence[str], wanted: set[str]) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(tenant, conversation id) → [(message index as read, rendered line)], for the wanted ids (the job's
    reader and renderer; system messages are not shown to the guard and not here)."""
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for path in match_input_files(list(patterns)):
        for item in read_conversations_from_file(path):
            if isinstance(item, Conversation) and item.conversation_id in wanted:
                found[(item.tenant_id, item.conversation_id)] = [
                    (i if m.source_index is None else m.source_index, render_turn(m))
                    for i, m in enumerate(item.messages)
                    if m.role != "system"
                ]
    return found


def with_conversations(queue: pl.DataFrame, patterns: Sequence[str]) -> pl.DataFrame:
    """The queue with a `conversation` column: the turns up to and including the judged one."""
    texts = conversation_texts(patterns, set(queue["conversation_id"])) if patterns else {}

    def text(row: dict) -> str | None:
        lines = texts.get((row["tenant_id"], row["conversation_id"]))
        return None if lines is None else "\n".join(line for i, line in lines if i <= row["turn_index"])

    column = [text(r) for r in queue.iter_rows(named=True)]
    return queue.with_columns(pl.Series("conversation", column, dtype=pl.String))


def export_queue(output: str, to: str, patterns: Sequence[str] = (), **filters) -> int:
    """Write the review queue to `to` (.csv or .parquet) with empty label columns; returns the row count."""
    queue = with_conversations(review_queue_rows(output, **filters), patterns)
    queue = queue.with_columns(label=pl.lit(None, pl.String), reviewer=pl.lit(None, pl.String),
                               note=pl.lit(None, pl.String))  # fmt: skip
    queue.write_parquet(to) if to.endswith(".parquet") else queue.write_csv(to)
    return queue.height


def read_labels(path: str, output: str, reviewer: str | None) -> tuple[pa.Table, int]:
    """The labelled rows of a reviewed queue file, checked against the published verdicts; (table, skipped)."""
    raw = pl.read_parquet(path) if path.endswith(".parquet") else pl.read_csv(path, infer_schema=False)
    missing = {"resume_key", "label"} - set(raw.columns)
    if missing:
        raise LabelError(f"{path}: missing column(s) {sorted(missing)}")
    verdicts = scan_output(output).verdicts.select(
        "resume_key", "conversation_id", "tenant_id", "unit", "turn_index", "verdict", "p_unsafe"
    )
    published = {r["resume_key"]: r for r in verdicts.collect().iter_rows(named=True)}
    rows, skipped, now = [], 0, dt.datetime.now(dt.UTC)
    for number, row in enumerate(raw.iter_rows(named=True), start=2):  # row 1 is the CSV header
        label = (row.get("label") or "").strip().lower()
        if not label:
            skipped += 1
            continue
        if label not in LABELS:
            raise LabelError(f"{path}: row {number}: field 'label' must be one of {list(LABELS)}, got {label!r}")
        guard = published.get(row["resume_key"])
        if guard is None:
            raise LabelError(f"{path}: row {number}: field 'resume_key' {row['resume_key']!r} is not a verdict "
                             f"published under {output}")  # fmt: skip
        ids = {k: guard[k] for k in ("resume_key", "conversation_id", "tenant_id", "unit", "turn_index")}
        given = {"label": label, "reviewer": row.get("reviewer") or reviewer, "note": row.get("note")}
        rows.append({**ids, **given, "guard_verdict": guard["verdict"], "guard_p_unsafe": guard["p_unsafe"],
                     "labelled_at": now})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=LABEL_SCHEMA), skipped


def import_labels(output: str, path: str, reviewer: str | None = None) -> tuple[int, int]:
    """Publish the labels of a reviewed file under `OUT/labels/`; returns (imported, skipped)."""
    table, skipped = read_labels(path, output, reviewer)
    if table.num_rows:
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        folder = FileSystems.join(output, "labels", f"date={day}")
        publish_table(table, output, f"labels-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}", folder)
    return table.num_rows, skipped


def scan_labels(output: str) -> pl.LazyFrame | None:
    """Every imported label (the newest per resume key wins), or None when there are none."""
    try:
        labels = pl.scan_parquet(f"{output.rstrip('/')}/labels/**/*.parquet", hive_partitioning=True)
        labels.collect_schema()
    except (FileNotFoundError, pl.exceptions.ComputeError):
        return None
    return labels.sort("labelled_at").group_by("resume_key").last()


def agreement(labels: pl.LazyFrame | None) -> pl.DataFrame:
    """Per tenant: labels, agreement with the guard's decided verdicts, and the confusion counts."""
    columns = {"tenant_id": pl.String, "labels": pl.UInt32, "decided": pl.UInt32, "agreement": pl.Float64}
    if labels is None:
        return pl.DataFrame(schema=columns)
    decided = pl.col("guard_verdict").is_in(list(LABELS))
    return (
        labels.group_by("tenant_id")
        .agg(
            labels=pl.len(),
            decided=decided.sum(),
            agreement=(decided & (pl.col("guard_verdict") == pl.col("label"))).sum() / decided.sum(),
            **{
                f"guard_{g}_label_{lab}": ((pl.col("guard_verdict") == g) & (pl.col("label") == lab)).sum()
                for g in ("safe", "unsafe", "review")
                for lab in LABELS
            },
        )
        .sort("tenant_id")
        .collect()
    )


def build_parser() -> argparse.ArgumentParser:
    """The review commands' options."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.review", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    out = sub.add_parser("export", help="the review queue for adjudication (CSV or Parquet)")
    out.add_argument("output")
    out.add_argument("--to", required=True)
    out.add_argument("--input", action="append", default=[], help="the logs, for the conversation text")
    out.add_argument("--tenant", action="append", default=[])
    out.add_argument("--since")
    out.add_argument("--until")
    out.add_argument("--limit", type=int)
    out.add_argument("--all-unsafe", action="store_true", help="queue the unsafe verdicts too")
    back = sub.add_parser("import", help="publish reviewers' labels under OUT/labels/")
    back.add_argument("output")
    back.add_argument("--labels", required=True)
    back.add_argument("--reviewer", help="reviewer name for rows that do not give one")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            n = export_queue(args.output, args.to, args.input, tenants=args.tenant, since=args.since,
                             until=args.until, all_unsafe=args.all_unsafe, limit=args.limit)  # fmt: skip
            print(f"{n} queued verdict(s) → {args.to}", file=sys.stderr)
        else:
            imported, skipped = import_labels(args.output, args.labels, args.reviewer)
            print(f"{imported} label(s) imported, {skipped} row(s) without a label skipped", file=sys.stderr)
    except LabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
