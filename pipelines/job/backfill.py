"""Backfills day by day (`--day-by-day` with `--since/--until`): each day is a run of its own, `--date DAY`.

Each day gets its own run id (`<run id>-<DAY>`, `-r2`... on a rerun), manifest, lease and consumed-files record,
so a day that fails does not fail the days that succeeded, and rerunning the same command resumes day by day: a
finished day whose input did not change opens no input file (`pipelines.job.consumed_files`), a failed one resumes
from what it published. `OUT/_backfills/<run id>.json` has one section per day (run id, status, exit code,
error, counts).
The exit status: 0 when every day succeeded; `exit_codes.PARTIAL` (9) when some did and some did not; a failure
that is not a day's own (usage, configuration, lease) stops at once with its own code, like every day failing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.job.exit_codes import CONFIG_INVALID, LOCKED, PARTIAL, USAGE, BackfillError, exit_code_for
from pipelines.job.manifest import RunManifest
from transforms.io.date_window import DateWindow
from transforms.stores.ledger import ensure_folder

log = logging.getLogger("rsafe_batch")
_NOT_A_DAYS_OWN = (USAGE, CONFIG_INVALID, LOCKED)  # would fail every day the same way: stop
_DAY_OPTIONS = ("date", "since", "until", "run-id", "day-by-day")  # the backfill's own, replaced per day


@dataclasses.dataclass
class DayOutcome:
    """One day of a backfill."""

    day: str
    run_id: str
    status: str  # succeeded | failed | not run
    exit_code: int | None = None
    error: str | None = None
    manifest: RunManifest | None = None


@dataclasses.dataclass
class BackfillResult:
    """A backfill's days; quacks like a manifest where the console needs one (run id, summary, tenants)."""

    run_id: str
    output: str
    days: list[DayOutcome]

    @property
    def failed(self) -> list[DayOutcome]:
        return [d for d in self.days if d.status != "succeeded"]

    @property
    def per_tenant(self) -> dict[str, dict[str, int]]:
        """The days' per-tenant counts added up."""
        table: dict[str, dict[str, int]] = {}
        for day in self.days:
            for tenant, kinds in (day.manifest.per_tenant if day.manifest else {}).items():
                row = table.setdefault(tenant, {})
                for kind, n in kinds.items():
                    row[kind] = row.get(kind, 0) + n
        return table

    def summary_line(self) -> str:
        done = len(self.days) - len(self.failed)
        failed = ", ".join(f"{d.day} ({d.status}, exit {d.exit_code})" for d in self.failed) or "none"
        return f"{done} of {len(self.days)} days succeeded; failed or not run: {failed}; record {self.path}"

    @property
    def path(self) -> str:
        return FileSystems.join(self.output, "_backfills", f"{self.run_id}.json")

    def write(self) -> None:
        record: dict[str, Any] = {"run_id": self.run_id, "written_at": dt.datetime.now(dt.UTC).isoformat()}
        record["days"] = [
            {
                "day": d.day,
                "run_id": d.run_id,
                "status": d.status,
                "exit_code": d.exit_code,
                "error": d.error,
                "rows_read": d.manifest.rows_read if d.manifest else None,
                "totals": d.manifest.totals if d.manifest else {},
                "input_counts": d.manifest.input_counts if d.manifest else {},
            }
            for d in self.days
        ]
        ensure_folder(self.path.rsplit("/", 1)[0])
        with FileSystems.create(self.path) as handle:
            handle.write(json.dumps(record, indent=2, default=str).encode())


def _is_day_option(arg: str) -> bool:
    name = arg.split("=", 1)[0].lstrip("-").replace("_", "-")
    return arg.startswith("--") and name in _DAY_OPTIONS


def day_argv(argv: Sequence[str], day: str, run_id: str) -> list[str]:
    """The backfill's command line for one day: its window and run-id options replaced by `--date DAY`."""
    kept: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if _is_day_option(arg):
            takes_value = "=" not in arg and arg.lstrip("-").replace("_", "-") != "day-by-day"
            i += 2 if takes_value else 1
            continue
        kept.append(arg)
        i += 1
    return [*kept, "--date", day, "--run-id", run_id]


def fresh_day_run_id(output: str, run_id: str, day: str) -> str:
    """`<run id>-<DAY>`, or `-r2`, `-r3`, ... after it when a rerun of the backfill finds that run's manifest (a
    run's books are its run id's: a second run under the same id would add up both)."""
    candidate, attempt = f"{run_id}-{day}", 1
    while FileSystems.exists(FileSystems.join(output, "_runs", f"{candidate}.json")):
        attempt += 1
        candidate = f"{run_id}-{day}-r{attempt}"
    return candidate


def run_by_day(
    argv: Sequence[str], dates: DateWindow | None, run_id: str, output: str, run_day: Callable[[list[str]], RunManifest]
) -> BackfillResult:
    """Run `run_day` for each day of `dates` in order; raises `BackfillError` (with the result) unless all
    succeeded. `dates` must be bounded (both --since and --until)."""
    if dates is None or not dates.bounded:
        raise ValueError("--day-by-day needs both --since and --until")
    if not output:
        raise ValueError("--output is required")
    result = BackfillResult(run_id, output.rstrip("/"), [])
    days = dates.days() or []
    for n, day in enumerate(days):
        day_run = fresh_day_run_id(result.output, run_id, day)
        try:
            manifest = run_day(day_argv(argv, day, day_run))
            result.days.append(DayOutcome(day, day_run, "succeeded", 0, manifest=manifest))
        except Exception as exc:
            code = exit_code_for(exc)
            log.error("backfill %s: day %s failed (exit %d): %s", run_id, day, code, exc)
            result.days.append(DayOutcome(day, day_run, "failed", code, f"{type(exc).__name__}: {exc}"))
            if code in _NOT_A_DAYS_OWN:
                result.days += [DayOutcome(d, f"{run_id}-{d}", "not run") for d in days[n + 1 :]]
                break
        result.write()
    result.write()
    if result.failed:
        succeeded = len(result.days) - len(result.failed)
        code = PARTIAL if succeeded else next(d.exit_code for d in result.failed if d.exit_code is not None)
        raise BackfillError(f"backfill {run_id}: {result.summary_line()}", code, result)
    return result
