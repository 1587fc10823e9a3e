"""The consumed-files record: which input files a succeeded run read for which days, so a rerun skips them.

    OUT/_consumed/date=<YYYY-MM-DD>/<run_id>.json   {"run_id", "work", "files": {path: {"size", "mtime"}}}

Written at the end of a succeeded run whose window is bounded (`--date`, or both `--since` and `--until`), one
record per day of the window, listing every input file it opened that can hold that day (a file of that day's
Hive partition, or a file without one). A later run over the same days skips a file whose path, size and
modification time match a record of each day of its window the file can hold, and whose `work` matches: the
model, template version, tenants' policy versions, `--strict-input` and `--column-map` (what decides which units
a file makes and their resume keys). A new file, a changed one (size or mtime), or new work is read; only units
not already published are judged (the resume keys). Only the records of the run's own days are read, so the
cost does not grow with the number of past nights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

from apache_beam.io.filesystems import FileSystems

from pipelines.job.plan import JobPlan
from pipelines.job.resume_keys import OutputUnreadableError
from transforms.io.date_window import DateWindow
from transforms.io.input_files import ListedFile
from transforms.io.partition_days import partition_day
from transforms.prompts.render import template_version
from transforms.stores.ledger import ensure_folder

FOLDER = "_consumed"
Consumed = dict[str, dict[str, tuple[int, float]]]  # day → path → (size, mtime)


def work_fingerprint(plan: JobPlan) -> str:
    """What makes a file's units and resume keys: an earlier record of other work does not apply."""
    registry = plan.registry
    work = {
        "model": plan.context.model,
        "template_version": template_version(plan.template),
        "policies": {pid: p.version for pid, p in sorted(registry.policies().items())},
        "tenants": dict(sorted(registry.tenants().items())),
        "default_policy": registry.default_policy_id,
        "reject_unknown_tenants": registry.reject_unknown_tenants,
        "strict_input": plan.strict_input,
        "column_map": sorted(plan.column_map),
    }
    return hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()[:16]


def _day_folder(output: str, day: str) -> str:
    return FileSystems.join(output, FOLDER, f"date={day}")


def read_consumed(output: str, days: Iterable[str], work: str) -> Consumed:
    """{day: {path: (size, mtime)}} of the records of `days` made by the same work. Raises
    `OutputUnreadableError` when a record cannot be listed or read (skipping unread input would lose it)."""
    consumed: Consumed = {}
    for day in days:
        pattern = FileSystems.join(_day_folder(output, day), "*.json")
        try:
            paths = sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
        except Exception as exc:
            raise OutputUnreadableError(f"could not list the consumed-files records ({pattern}): {exc}") from exc
        for path in paths:
            try:
                with FileSystems.open(path) as handle:
                    record = json.loads(handle.read())
            except Exception as exc:
                raise OutputUnreadableError(f"could not read the consumed-files record {path}: {exc}") from exc
            if record.get("work") != work:
                continue
            files = consumed.setdefault(day, {})
            files.update({p: (int(f["size"]), float(f["mtime"])) for p, f in record["files"].items()})
    return consumed


def consumed_check(consumed: Consumed, dates: DateWindow) -> Callable[[ListedFile, str | None], bool]:
    """`plan_input`'s test: the file is unchanged in a record of every day of `dates` it can hold."""
    days = dates.days() or []

    def already_consumed(listed: ListedFile, partition: str | None) -> bool:
        needed = [partition] if partition is not None else days
        seen = (listed.size, listed.mtime)
        return bool(needed) and all(consumed.get(day, {}).get(listed.path) == seen for day in needed)

    return already_consumed


def write_consumed(output: str, run_id: str, dates: DateWindow, opened: Iterable[ListedFile], work: str) -> None:
    """One record per day of the window, of the opened files that can hold that day (call after success)."""
    opened = list(opened)
    for day in dates.days() or []:
        files = {f.path: {"size": f.size, "mtime": f.mtime} for f in opened if partition_day(f.path) in (None, day)}
        if not files:
            continue
        folder = _day_folder(output, day)
        ensure_folder(folder)
        path = FileSystems.join(folder, f"{run_id}.json")
        with FileSystems.create(path + ".tmp") as handle:  # staged: a reader never sees half a record
            handle.write(json.dumps({"run_id": run_id, "work": work, "files": files}, indent=1).encode())
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([path + ".tmp"], [path])
