"""What earlier runs published under an output: verdict resume keys and dead-letter keys (for resuming).

A listing or a read that fails is an error, never "nothing published": a run that went on would judge everything
again and publish duplicates. (An empty or absent prefix lists as no files on every Beam filesystem.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.job.plan import JobPlan
from transforms.io.partition_days import partition_day


class OutputUnreadableError(OSError):
    """What earlier runs published under the output could not be listed or read (exit code 8)."""


def _read_published_column(
    output: str, pattern: str, column: str, wanted: Callable[[str], bool] = lambda _path: True
) -> set[str]:
    """The values of `column` in every `wanted` Parquet file matching `pattern` under `output` (files without
    it: none). Raises `OutputUnreadableError` naming the pattern or file that could not be listed or read."""
    where = FileSystems.join(output, pattern)
    try:
        files = [m.path for result in FileSystems.match([where]) for m in result.metadata_list]
    except Exception as exc:
        raise OutputUnreadableError(f"could not list what earlier runs published ({where}): {exc}") from exc
    values: set[str] = set()
    for path in filter(wanted, files):
        try:
            with FileSystems.open(path) as handle:
                parquet = pq.ParquetFile(handle)
                if column in parquet.schema_arrow.names:
                    values.update(parquet.read(columns=[column]).column(column).to_pylist())
        except Exception as exc:
            raise OutputUnreadableError(f"could not read the published file {path} ({column}): {exc}") from exc
    values.discard(None)
    return values


def read_published_resume_keys(output: str, days: Sequence[str] | None = None) -> set[str]:
    """Resume keys of the verdicts already published under `output` (by any earlier run): only in the partitions
    of `days` when given (a verdict's partition is its conversation's day), else in every partition."""
    if days is None:
        return _read_published_column(output, "verdicts/*/*/*.parquet", "resume_key")
    keys: set[str] = set()
    for day in days:
        keys |= _read_published_column(output, f"verdicts/tenant=*/date={day}/*.parquet", "resume_key")
    return keys


def read_published_dead_letter_keys(output: str, since: str | None = None) -> set[str]:
    """Keys of the dead letters already published under `output` (by any earlier run): a rerun that meets the
    same bad input counts it as already recorded instead of writing it again. Dead letters are partitioned by
    the date of the run that wrote them, so with `since` only the partitions of that day and later are read (a
    run judges days that have happened: a dead letter of day D was written on D or later)."""

    def wanted(path: str) -> bool:
        day = partition_day(path)
        return since is None or day is None or day >= since

    return _read_published_column(output, "errors/*/*.parquet", "dead_letter_key", wanted)


def with_published(plan: JobPlan) -> JobPlan:
    """The plan with what earlier runs published under its output for its days (read while holding the
    output's lease): the verdicts of the window's days when it is bounded, else of every day."""
    days = plan.dates.days() if plan.dates is not None else None
    return dataclasses.replace(
        plan,
        done_keys=frozenset(read_published_resume_keys(plan.output, days)),
        recorded_dead_letters=frozenset(
            read_published_dead_letter_keys(plan.output, plan.dates.since if plan.dates else None)
        ),
    )
