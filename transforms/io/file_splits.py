"""Large Parquet files as several row-group ranges, so that a distributed runner reads one file on many workers.

Only canonical-layout files whose schema is usable are split (a turn-per-row file is read whole: grouping its
rows into conversations needs every row; a file with a schema problem is one dead letter). Splits never share
a row group, so every row is read exactly once and the row accounting holds as for whole files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.io.column_map import mapped_schema
from transforms.io.log_schema import CANONICAL, detect_layout, schema_problem

SPLIT_ROWS = 131_072
"""About how many rows one split holds (whole row groups: a split has at least one)."""
_FOOTER_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


@dataclasses.dataclass(frozen=True)
class FileSplit:
    """A file to read, or the row groups [first, end) of it."""

    path: str
    row_groups: tuple[int, int] | None = None  # None: the whole file


def row_group_ranges(rows_per_group: Sequence[int], split_rows: int) -> list[tuple[int, int]]:
    """Consecutive [first, end) ranges of row groups, each closed once it holds `split_rows` rows or more."""
    ranges, first, rows = [], 0, 0
    for index, n in enumerate(rows_per_group):
        rows += n
        if rows >= split_rows:
            ranges.append((first, index + 1))
            first, rows = index + 1, 0
    if first < len(rows_per_group):
        ranges.append((first, len(rows_per_group)))
    return ranges


def plan_splits(
    path: str,
    open_file: Callable[[str], IO[bytes]],
    split_rows: int = SPLIT_ROWS,
    strict: bool = False,
    column_map: Mapping[str, str] | None = None,
) -> list[FileSplit]:
    """The splits of one file: several when it is a usable canonical file of more than `split_rows` rows in
    several row groups, else the whole file (an unreadable footer too: reading it makes the dead letter)."""
    try:
        with open_file(path) as f:
            parquet = pq.ParquetFile(f)
            metadata, schema = parquet.metadata, mapped_schema(parquet.schema_arrow, column_map or {})
    except _FOOTER_ERRORS:
        return [FileSplit(path)]
    layout = detect_layout(schema)
    if layout != CANONICAL or schema_problem(schema, layout, strict):
        return [FileSplit(path)]
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    ranges = row_group_ranges(groups, split_rows)
    return [FileSplit(path, r) for r in ranges] if len(ranges) > 1 else [FileSplit(path)]
