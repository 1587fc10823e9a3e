"""Synthetic log archives for the pruning tests and `benchmarks/archive_nights.py`: N days of the same rows per day.

- Hive layout: `ROOT/date=YYYY-MM-DD/part-0.parquet`, one file per day.
- Flat layout: one file, one row group per day, in time order (its footer statistics say each group's day).

Every conversation is a user question and an assistant answer; every 10th is about something the fake engine
flags. Conversation ids are unique across the archive.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scripts.generate_sample_logs import CANONICAL_SCHEMA

FIRST_DAY = dt.date(2026, 1, 1)
TENANTS = ("globex", "medcare")


def archive_days(days: int, first: dt.date = FIRST_DAY) -> list[str]:
    """The YYYY-MM-DD days of an archive, oldest first."""
    return [(first + dt.timedelta(days=n)).isoformat() for n in range(days)]


def day_table(day: str, rows: int, tag: str = "") -> pa.Table:
    """`rows` canonical conversations spread over the UTC day `day` (ids `<day>-<tag><n>`)."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    step = dt.timedelta(seconds=86_399 / max(rows, 1))
    records = []
    for n in range(rows):
        topic = "how to steal a car" if n % 10 == 0 else f"a recipe for soup number {n}"
        records.append(
            {
                "conversation_id": f"{day}-{tag}{n}",
                "tenant_id": TENANTS[n % len(TENANTS)],
                "created_at": start + n * step,
                "messages": [{"role": "user", "content": f"Tell me {topic}."}, {"role": "assistant", "content": "No."}],
            }
        )
    return pa.Table.from_pylist(records, schema=CANONICAL_SCHEMA)


def write_hive_archive(root: Path, days: list[str], rows_per_day: int) -> list[Path]:
    """One `date=<day>/part-0.parquet` per day under `root`; returns the files."""
    files = []
    for day in days:
        path = root / f"date={day}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(day_table(day, rows_per_day), path)
        files.append(path)
    return files


def write_flat_archive(path: Path, days: list[str], rows_per_day: int) -> Path:
    """One file with a row group per day (no partition in its path: pruned by its footer statistics)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, CANONICAL_SCHEMA) as writer:
        for day in days:
            writer.write_table(day_table(day, rows_per_day), row_group_size=max(rows_per_day, 1))
    return path
