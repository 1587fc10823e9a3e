"""What a run reads, decided before reading: files outside the window by their Hive path partition (never opened),
row groups outside it by their footer's `created_at` statistics, and files an earlier run already consumed.

The footer of every other file is read once here, on the launcher: its row count (the books' rows read), its
schema (the `--column-map` check) and its row-group statistics. What comes out is the list of `FileSplit`s the
pipeline reads, and the counts the manifest records (`InputCounts`).

Only canonical-layout files lose single row groups: a turn-per-row file groups turns by conversation over the whole
file, so it is skipped only when none of its row groups can hold a day of the window (then none of its
conversations can start on one), else read whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.io.column_map import ColumnMapError, column_map_problem, mapped_schema, source_column
from transforms.io.date_window import DateWindow
from transforms.io.file_splits import FileSplit, row_group_ranges
from transforms.io.input_files import ListedFile, OpenFile, open_with_beam
from transforms.io.log_schema import CANONICAL, detect_layout, schema_problem
from transforms.io.partition_days import partition_day, row_group_days

_FOOTER_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


@dataclasses.dataclass
class InputCounts:
    """The manifest's `input` section: how much of the listed input the run opened and read."""

    files_listed: int = 0
    files_pruned_by_partition: int = 0  # outside the window by their path: never opened
    files_already_consumed: int = 0  # unchanged since a succeeded run of the same days consumed them: never opened
    files_opened: int = 0  # footer read
    files_skipped_by_statistics: int = 0  # opened, but no row group can hold a day of the window
    row_groups: int = 0  # in the opened files
    row_groups_skipped: int = 0  # by their statistics
    rows_read: int = 0  # rows of the row groups read (what the books must account for)
    rows_not_read: int = 0  # rows of the row groups skipped by their statistics


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """The splits to read, the files opened (for the consumed-files record) and the counts."""

    splits: tuple[FileSplit, ...]
    opened: tuple[ListedFile, ...]
    counts: InputCounts


def outside_by_partition(listed: ListedFile, dates: DateWindow | None) -> bool:
    """Whether the file's Hive path partition names a day outside the window (it is never opened)."""
    day = partition_day(listed.path)
    return dates is not None and day is not None and not dates.contains(day)


def consecutive_runs(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indexes as [first, end) ranges of consecutive ones: [0, 1, 2, 5, 6] → [(0, 3), (5, 7)]."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _kept_row_groups(metadata: pq.FileMetaData, created_at: str, dates: DateWindow | None) -> list[int]:
    spans = row_group_days(metadata, created_at)
    return [g for g, span in enumerate(spans) if dates is None or span is None or dates.overlaps(*span)]


def _file_splits(
    path: str, sizes: list[int], kept: list[int], canonical: bool, split_rows: int | None
) -> list[FileSplit]:
    """The splits of one opened file's kept row groups (`split_rows` None: no splitting beyond pruning)."""
    if not kept:
        return []
    if not canonical or (len(kept) == len(sizes) and (split_rows is None or sum(sizes) <= split_rows)):
        return [FileSplit(path)]
    splits = []
    for first, end in consecutive_runs(kept):
        if split_rows is None:
            splits.append(FileSplit(path, (first, end)))
            continue
        splits += [FileSplit(path, (first + a, first + b)) for a, b in row_group_ranges(sizes[first:end], split_rows)]
    return [FileSplit(path)] if splits == [FileSplit(path, (0, len(sizes)))] else splits


def plan_input(
    files: Sequence[ListedFile],
    dates: DateWindow | None,
    consumed: Callable[[ListedFile, str | None], bool] | None = None,
    split_rows: int | None = None,
    strict: bool = False,
    column_map: Mapping[str, str] | None = None,
    open_file: OpenFile | None = None,
) -> InputPlan:
    """Prune `files` for the window `dates` (None: every day) and plan the splits to read.

    `consumed(file, partition day)` says whether an earlier run consumed the file unchanged for every day of the
    window it can hold. `split_rows` (the shuffle path) also cuts large canonical files into row-group ranges.
    Raises `ColumnMapError` for a file the `--column-map` does not fit. A file whose footer cannot be read is
    read whole (it becomes one dead letter, 0 rows).
    """
    column_map = dict(column_map or {})
    counts, splits, opened = InputCounts(files_listed=len(files)), [], []
    for listed in files:
        day = partition_day(listed.path)
        if outside_by_partition(listed, dates):
            counts.files_pruned_by_partition += 1
            continue
        if consumed is not None and consumed(listed, day):
            counts.files_already_consumed += 1
            continue
        counts.files_opened += 1
        opened.append(listed)
        try:
            with (open_file or open_with_beam)(listed.path) as handle:
                parquet = pq.ParquetFile(handle)
                metadata, schema = parquet.metadata, parquet.schema_arrow
        except _FOOTER_ERRORS:
            splits.append(FileSplit(listed.path))
            continue
        problem = column_map_problem(listed.path, schema, column_map) if column_map else None
        if problem:
            raise ColumnMapError(problem)
        mapped = mapped_schema(schema, column_map)
        layout = detect_layout(mapped)
        sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        counts.row_groups += len(sizes)
        if schema_problem(mapped, layout, strict):  # the whole file is one dead letter of all its rows
            splits.append(FileSplit(listed.path))
            counts.rows_read += metadata.num_rows
            continue
        kept = (
            list(range(len(sizes)))
            if day is not None
            else _kept_row_groups(metadata, source_column("created_at", column_map), dates)
        )
        canonical = layout == CANONICAL
        if not canonical and kept:
            kept = list(range(len(sizes)))  # grouping turns needs the whole file
        file_splits = _file_splits(listed.path, sizes, kept, canonical, split_rows)
        if not file_splits:
            counts.files_skipped_by_statistics += 1
        splits += file_splits
        read = sum(sizes[g] for g in kept)
        counts.row_groups_skipped += len(sizes) - len(kept)
        counts.rows_read += read
        counts.rows_not_read += sum(sizes) - read
    return InputPlan(tuple(splits), tuple(opened), counts)
