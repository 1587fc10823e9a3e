"""What earlier runs published under an output: verdict resume keys and dead-letter keys (for resuming).

A listing or a read that fails is an error, never "nothing published": a run that went on would judge everything
again and publish duplicates. (An empty or absent prefix lists as no files on every Beam filesystem.)
"""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.job_plan import JobPlan


class OutputUnreadableError(OSError):
    """What earlier runs published under the output could not be listed or read (exit code 8)."""


def _read_published_column(output: str, pattern: str, column: str) -> set[str]:
    """The values of `column` in every Parquet file matching `pattern` under `output` (files without it: none).
    Raises `OutputUnreadableError` naming the pattern or file that could not be listed or read."""
    where = FileSystems.join(output, pattern)
    try:
        files = [m.path for result in FileSystems.match([where]) for m in result.metadata_list]
    except Exception as exc:
        raise OutputUnreadableError(f"could not list what earlier runs published ({where}): {exc}") from exc
    values: set[str] = set()
    for path in files:
        try:
            with FileSystems.open(path) as handle:
                parquet = pq.ParquetFile(handle)
                if column in parquet.schema_arrow.names:
                    values.update(parquet.read(columns=[column]).column(column).to_pylist())
        except Exception as exc:
            raise OutputUnreadableError(f"could not read the published file {path} ({column}): {exc}") from exc
    values.discard(None)
    return values


def read_published_resume_keys(output: str) -> set[str]:
    """Resume keys of every verdict already published under `output` (by any earlier run)."""
    return _read_published_column(output, "verdicts/*/*/*.parquet", "resume_key")


def read_published_dead_letter_keys(output: str) -> set[str]:
    """Keys of every dead letter already published under `output` (by any earlier run): a rerun that meets the
    same bad input counts it as already recorded instead of writing it again."""
    return _read_published_column(output, "errors/*/*.parquet", "dead_letter_key")


def with_published(plan: JobPlan) -> JobPlan:
    """The plan with what earlier runs published under its output (read while holding the output's lease)."""
    return dataclasses.replace(
        plan,
        done_keys=frozenset(read_published_resume_keys(plan.output)),
        recorded_dead_letters=frozenset(read_published_dead_letter_keys(plan.output)),
    )
