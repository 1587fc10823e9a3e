"""Listing the input: the files matching `--input` patterns, with the size and modification time the listing gives."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

OpenFile = Callable[[str], IO[bytes]]


class InputError(ValueError):
    """The input patterns are unusable (e.g. one matches no file)."""


@dataclasses.dataclass(frozen=True)
class ListedFile:
    """An input file as its filesystem listed it: path, size in bytes, last modification (seconds since the epoch;
    on S3/GCS the object's last-modified time, so a re-uploaded object is a changed file)."""

    path: str
    size: int
    mtime: float


def list_input_files(patterns: Sequence[str]) -> list[ListedFile]:
    """The files matching `patterns` (globs, any Beam filesystem), sorted by path and de-duplicated.

    A local directory stands for the `*.parquet` files in it. Raises `InputError` naming the first pattern
    that matches nothing.
    """
    if not patterns:
        raise InputError("no input pattern given")
    files: dict[str, ListedFile] = {}
    for pattern in patterns:
        glob = FileSystems.join(pattern, "*.parquet") if os.path.isdir(pattern) else pattern
        try:
            matched = FileSystems.match([glob])[0].metadata_list
        except Exception as exc:  # BeamIOError, or ValueError for an unknown scheme
            raise InputError(f"input pattern {pattern!r} could not be matched: {exc}") from exc
        if not matched:
            raise InputError(f"input pattern {pattern!r} matched no files")
        for m in matched:
            files[m.path] = ListedFile(m.path, int(m.size_in_bytes), float(m.last_updated_in_seconds or 0.0))
    return [files[path] for path in sorted(files)]


def match_input_files(patterns: Sequence[str]) -> list[str]:
    """The paths of `list_input_files(patterns)`."""
    return [listed.path for listed in list_input_files(patterns)]


def open_with_beam(path: str) -> IO[bytes]:
    """Open any Beam filesystem's file for reading, as stored (no decompression)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def count_rows_in_file(path: str, open_file: OpenFile | None = None) -> int:
    """The row count in a Parquet file's footer; raises (pyarrow's error) if the file is not Parquet."""
    with (open_file or open_with_beam)(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_file_schema(path: str, open_file: OpenFile | None = None) -> pa.Schema:
    """The Arrow schema in a Parquet file's footer; raises (pyarrow's error) if the file is not Parquet."""
    with (open_file or open_with_beam)(path) as f:
        return pq.ParquetFile(f).schema_arrow
