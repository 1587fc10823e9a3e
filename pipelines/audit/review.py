"""The reviewer loop: export the review queue for human adjudication, import the reviewers' labels back.

    python -m pipelines.review export OUT --to queue.csv [--input 'logs/*.parquet']... [--tenant T]...
        [--since DAY] [--until DAY] [--limit N] [--all-unsafe]
    python -m pipelines.review import OUT --labels queue.csv [--reviewer NAME]

`export` writes one row per queued verdict (`verdict == review`, and with `--all-unsafe` the unsafe ones too):
its ids, the guard's verdict, P(unsafe) and reasoning, the conversation up to the judged turn (from `--input`, read
with the job's own reader and renderer), and empty `label` / `reviewer` / `note` columns to fill in. CSV or
Parquet (by the target's suffix).

`import` checks every filled-in row (label `safe` or `unsafe`; a resume key the output has published) and
publishes them atomically as `OUT/labels/date=<day>/part-*.parquet`; rows with no label are skipped and counted
(a row with a note but no label is warned about). It is idempotent: a reviewer's new label of a verdict replaces
their earlier one (the older files are rewritten without it), so importing the same file twice leaves the same
labels. Rows without a reviewer (and no `--reviewer`) are warned about. It then prints the agreement per tenant
(`pipelines.audit.label_agreement`: Cohen's κ and the confusion counts), which the audit report also shows over time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.audit.cli import (
    AuditParser,
    MissingInputError,
    UsageError,
    check_day_range,
    check_target,
    positive_int,
    require_file,
    require_tenants,
    require_verdicts,
    run_politely,
    utc_day,
)
from pipelines.audit.label_agreement import LABELS, agreement, agreement_lines, scan_labels
from pipelines.audit.report_queries import scan_output
from transforms.io.read_logs import InputError, match_input_files, read_conversations_from_file
from transforms.io.write_partitions import publish_table
from transforms.prompts.render import render_turn
from transforms.records import Conversation

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


def empty_queue_reason(output: str, all_unsafe: bool = False) -> str:
    """Why no verdict was queued, and how to fill the queue."""
    counts = dict(scan_output(output).verdicts.group_by("verdict").len().collect().iter_rows())
    unsafe = counts.get("unsafe", 0)
    if all_unsafe or not unsafe:
        return "no verdict is `review` or `unsafe` under the filters given: nothing for reviewers to check"
    return (f"no verdict is `review` (the run had no --review-band, or nothing fell in it); {unsafe} unsafe "
            "verdict(s) can be queued with --all-unsafe, or rerun the job with --review-band LOW,HIGH")  # fmt: skip


def export_queue(output: str, to: str, patterns: Sequence[str] = (), **filters) -> int:
    """Write the review queue to `to` (.csv or .parquet) with empty label columns; returns the row count."""
    try:
        queue = with_conversations(review_queue_rows(output, **filters), patterns)
    except InputError as exc:
        relative = [p for p in patterns if "://" not in p and not p.startswith("/")]
        where = f" (relative patterns are read from {Path.cwd()})" if relative else ""
        raise MissingInputError(f"--input: {exc}{where}") from exc
    queue = queue.with_columns(label=pl.lit(None, pl.String), reviewer=pl.lit(None, pl.String),
                               note=pl.lit(None, pl.String))  # fmt: skip
    queue.write_parquet(to) if to.endswith(".parquet") else queue.write_csv(to)
    return queue.height


def read_labels(path: str, output: str, reviewer: str | None) -> tuple[pa.Table, dict[str, list[int]]]:
    """The labelled rows of a reviewed queue file, checked against the published verdicts; (table, notes) where
    notes lists the file's row numbers skipped for no label (`skipped`), of those the ones with a note
    (`note_only`), and the rows stored without a reviewer (`no_reviewer`)."""
    kind = "Parquet" if path.endswith(".parquet") else "CSV"
    try:
        raw = pl.read_parquet(path) if kind == "Parquet" else pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LabelError(f"{path}: not a readable {kind} file: {exc}") from exc
    missing = {"resume_key", "label"} - set(raw.columns)
    if missing:
        raise LabelError(f"{path}: missing column(s) {sorted(missing)}")
    verdicts = scan_output(output).verdicts.select(
        "resume_key", "conversation_id", "tenant_id", "unit", "turn_index", "verdict", "p_unsafe"
    )
    published = {r["resume_key"]: r for r in verdicts.collect().iter_rows(named=True)}
    rows, now = [], dt.datetime.now(dt.UTC)
    notes: dict[str, list[int]] = {"skipped": [], "note_only": [], "no_reviewer": []}
    for number, row in enumerate(raw.iter_rows(named=True), start=2):  # row 1 is the CSV header
        label = (row.get("label") or "").strip().lower()
        note = (row.get("note") or "").strip() or None
        if not label:
            notes["skipped"].append(number)
            if note:
                notes["note_only"].append(number)
            continue
        if label not in LABELS:
            raise LabelError(f"{path}: row {number}: field 'label' must be one of {list(LABELS)}, got {label!r}")
        guard = published.get(row["resume_key"])
        if guard is None:
            raise LabelError(f"{path}: row {number}: field 'resume_key' {row['resume_key']!r} is not a verdict "
                             f"published under {output}")  # fmt: skip
        who = (row.get("reviewer") or "").strip() or reviewer
        if who is None:
            notes["no_reviewer"].append(number)
        ids = {k: guard[k] for k in ("resume_key", "conversation_id", "tenant_id", "unit", "turn_index")}
        rows.append({**ids, "label": label, "reviewer": who, "note": note, "guard_verdict": guard["verdict"],
                     "guard_p_unsafe": guard["p_unsafe"], "labelled_at": now})  # fmt: skip
    keys = [(r["resume_key"], r["reviewer"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise LabelError(f"{path}: a verdict is labelled more than once by the same reviewer")
    return pa.Table.from_pylist(rows, schema=LABEL_SCHEMA), notes


def _label_files(output: str) -> list[str]:
    pattern = FileSystems.join(output, "labels", "*", "*.parquet")
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def _replace_file(path: str, table: pa.Table, output: str) -> None:
    """Rewrite a published labels file with `table` (staged, then renamed over it); delete it when empty."""
    if table.num_rows == 0:
        FileSystems.delete([path])
        return
    folder = FileSystems.join(output, "_staging", "labels")
    if not FileSystems.exists(folder):
        FileSystems.mkdirs(folder)
    staged = FileSystems.join(folder, f"{uuid.uuid4().hex[:12]}.parquet")
    with FileSystems.create(staged) as handle:
        pq.write_table(table, handle, compression="zstd")
    FileSystems.rename([staged], [path])


def drop_replaced_labels(output: str, new: pa.Table, keep: str) -> int:
    """Remove from the published labels files (all but `keep`) the labels `new` replaces: same resume key and
    reviewer. Returns how many were removed."""
    replaced = {(k, r or "") for k, r in zip(new["resume_key"].to_pylist(), new["reviewer"].to_pylist(), strict=True)}
    removed = 0
    for path in _label_files(output):
        if path == keep:
            continue
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        pairs = zip(table["resume_key"].to_pylist(), table["reviewer"].to_pylist(), strict=True)
        stays = [(k, r or "") not in replaced for k, r in pairs]
        if not all(stays):
            removed += stays.count(False)
            _replace_file(path, table.filter(pa.array(stays)), output)
    return removed


def import_labels(output: str, path: str, reviewer: str | None = None) -> tuple[int, int, dict[str, list[int]]]:
    """Publish the labels of a reviewed file under `OUT/labels/`, replacing the same reviewers' earlier labels of
    the same verdicts; returns (imported, replaced, notes) (`read_labels`'s notes)."""
    table, notes = read_labels(path, output, reviewer)
    replaced = 0
    if table.num_rows:
        now = dt.datetime.now(dt.UTC)
        folder = FileSystems.join(output, "labels", f"date={now:%Y-%m-%d}")
        published = publish_table(table, output, f"labels-{now:%Y%m%dT%H%M%S}", folder)
        replaced = drop_replaced_labels(output, table, keep=published)
    return table.num_rows, replaced, notes


def _rows(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def build_parser() -> argparse.ArgumentParser:
    """The review commands' options."""
    parser = AuditParser(prog="python -m pipelines.review", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    out = sub.add_parser("export", help="the review queue for adjudication (CSV or Parquet)")
    out.add_argument("output")
    out.add_argument("--to", required=True, help="the queue file to write: .csv or .parquet")
    out.add_argument("--input", action="append", default=[], help="the logs, for the conversation text")
    out.add_argument("--tenant", action="append", default=[])
    out.add_argument("--since", type=utc_day, help="first UTC day (YYYY-MM-DD)")
    out.add_argument("--until", type=utc_day, help="last UTC day (YYYY-MM-DD)")
    out.add_argument("--limit", type=positive_int, help="at most this many rows (newest first)")
    out.add_argument("--all-unsafe", action="store_true", help="queue the unsafe verdicts too")
    back = sub.add_parser("import", help="publish reviewers' labels under OUT/labels/")
    back.add_argument("output")
    back.add_argument("--labels", required=True, help="the reviewed queue file (.csv or .parquet)")
    back.add_argument("--reviewer", help="reviewer name for rows that do not give one")
    return parser


def export_command(args: argparse.Namespace) -> int:
    """`review export`, after parsing."""
    check_target("--to", args.to, (".csv", ".parquet"))
    check_day_range(args.since, args.until)
    require_verdicts(args.output)
    require_tenants(args.output, args.tenant)
    n = export_queue(args.output, args.to, args.input, tenants=args.tenant, since=args.since, until=args.until,
                     all_unsafe=args.all_unsafe, limit=args.limit)  # fmt: skip
    print(f"{n} queued verdict(s) → {args.to}", file=sys.stderr)
    if n == 0:
        print(f"note: the queue is empty: {empty_queue_reason(args.output, args.all_unsafe)}", file=sys.stderr)
    return 0


def import_command(args: argparse.Namespace) -> int:
    """`review import`, after parsing: publish, warn, and print the agreement per tenant."""
    require_verdicts(args.output)
    require_file("--labels", args.labels)
    if args.reviewer is not None and not args.reviewer.strip():
        raise UsageError("--reviewer: give a name")
    try:
        imported, replaced, notes = import_labels(args.output, args.labels, args.reviewer)
    except LabelError as exc:
        raise UsageError(str(exc)) from exc
    print(f"{imported} label(s) imported ({replaced} earlier label(s) of the same reviewer replaced), "
          f"{len(notes['skipped'])} row(s) without a label skipped", file=sys.stderr)  # fmt: skip
    if notes["note_only"]:
        print(f"warning: {args.labels}: row(s) {_rows(notes['note_only'])} have a note but no label: skipped "
              "(give them a label to import them)", file=sys.stderr)  # fmt: skip
    if notes["no_reviewer"]:
        print(f"warning: {args.labels}: row(s) {_rows(notes['no_reviewer'])} have no reviewer: stored without "
              "one (fill the reviewer column or give --reviewer NAME)", file=sys.stderr)  # fmt: skip
    for line in agreement_lines(agreement(scan_labels(args.output))):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = export_command if args.command == "export" else import_command
    return run_politely(parser.prog, lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
