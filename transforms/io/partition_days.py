"""The UTC day a file's Hive partition path names, and the days a Parquet row group's `created_at` statistics span.

Path partitions read (folder names, case-insensitive keys): `date=YYYY-MM-DD`, `dt=YYYY-MM-DD`, `day=YYYY-MM-DD`,
and `year=YYYY/month=MM/day=DD` (any depth, the file's nearest folders win). A value that is not a calendar day is
not a partition: such a file is opened and pruned by its statistics instead.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.parquet as pq

DAY_KEYS = ("date", "dt", "day")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _calendar_day(year: str, month: str, day: str) -> str | None:
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def partition_day(path: str) -> str | None:
    """The YYYY-MM-DD day named by the Hive partition folders of `path`, or None when it names none."""
    keys: dict[str, str] = {}
    for folder in path.replace("\\", "/").split("/")[:-1]:
        key, sep, value = folder.partition("=")
        if sep:
            keys[key.strip().lower()] = value.strip()
    for key in DAY_KEYS:
        value = keys.get(key, "")
        if _ISO_DAY.fullmatch(value):
            return _calendar_day(*value.split("-"))
    if all(keys.get(k, "").isdigit() for k in ("year", "month", "day")):
        return _calendar_day(keys["year"], keys["month"], keys["day"])
    return None


def _utc_day(value: object) -> str | None:
    if isinstance(value, dt.datetime):  # tz-naive timestamps are UTC, as the reader takes them
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return None  # a string or other type: no pruning by statistics


def row_group_days(metadata: pq.FileMetaData, column: str) -> list[tuple[str, str] | None]:
    """Per row group, the (first, last) UTC day of its `column` statistics, or None where they cannot be trusted
    to prune it: no such top-level column, no min/max, nulls in it or values out of range (rows that must become
    dead letters), or a type other than a timestamp or date (ISO strings may carry offsets that move the UTC day)."""
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if column not in names:
        return [None] * metadata.num_row_groups
    index = names.index(column)
    spans: list[tuple[str, str] | None] = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0:
            spans.append(None)
            continue
        try:  # a value out of Python's datetime range would be a dead letter: read the group
            first, last = _utc_day(stats.min), _utc_day(stats.max)
        except (OverflowError, ValueError, pa.ArrowException):
            spans.append(None)
            continue
        spans.append((first, last) if first and last else None)
    return spans
