"""The run manifest (`OUTPUT/_runs/<run_id>.json`) and what earlier runs published (for resuming)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.job import books
from pipelines.job.plan import JobPlan
from transforms.stores.ledger import ensure_folder
from transforms.stores.telemetry import ENGINE_COST_PREFIX, ENGINE_MS, REPAIR_COUNTER_PREFIX, UNKNOWN_TENANT_COUNTER

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def mark_abandoned(output: str, by_run_id: str) -> list[str]:
    """Mark every other manifest under `output` still `running` as `abandoned` (call it holding the lease: no
    other run can then be alive); returns their run ids."""
    pattern = FileSystems.join(output, "_runs", "*.json")
    try:
        paths = [m.path for result in FileSystems.match([pattern]) for m in result.metadata_list]
    except Exception:
        return []
    abandoned = []
    for path in sorted(paths):
        with FileSystems.open(path) as handle:
            try:
                record = json.loads(handle.read())
            except ValueError:
                continue
        if record.get("status") != "running" or record.get("run_id") == by_run_id:
            continue
        record.update(status="abandoned", abandoned_by=by_run_id, finished_at=record.get("finished_at") or _now())
        _write_json(path, record)
        abandoned.append(record["run_id"])
        log.warning("run %s never finished (killed?): its manifest is now marked abandoned", record["run_id"])
    return abandoned


def _write_json(path: str, record: dict) -> None:
    """Replace the JSON file at `path` through a staged copy (readers see the old or the new file)."""
    ensure_folder(path.rsplit("/", 1)[0])
    staged = path + ".tmp"
    with FileSystems.create(staged) as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([staged], [path])


@dataclasses.dataclass
class RunManifest:
    """What a run did, written at its start (`running`) and end (`succeeded`/`failed`)."""

    run_id: str
    output: str
    started_at: str
    options: dict[str, Any]
    model: str
    template_version: str
    input_files: list[str]
    policies: dict[str, str]
    judge_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # mode, threshold, review band, ...
    dedup: str = ""  # worker | shuffle: how duplicates were found (--dedup, resolved)
    status: str = "running"  # running | succeeded | failed | abandoned (set by a later run: never finished)
    finished_at: str | None = None
    rows_read: int | None = None
    # files listed / pruned by partition / already consumed / opened / skipped by statistics, row groups (skipped),
    # rows read and not read (`transforms.io.input_plan.InputCounts`)
    input_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    per_tenant: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    totals: dict[str, int] = dataclasses.field(default_factory=dict)
    error_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    # repair kind → conversations judged with at least one such input repair (transforms.io.normalise)
    input_repairs: dict[str, int] = dataclasses.field(default_factory=dict)
    accounting_problems: list[str] = dataclasses.field(default_factory=list)
    # tenant id → {"conversations": n, "likely_typo_of": listed tenant or None}: judged under the default policy
    unknown_tenants: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    error: str | None = None
    abandoned_runs: list[str] = dataclasses.field(default_factory=list)  # earlier runs found never finished
    # the runner's own counters (telemetry; None where it reports none): the books above are the run's own
    runner_metrics: dict[str, dict[str, int]] | None = None
    engine_seconds: float | None = None  # engine time of this run (per tenant: per_tenant[...]["engine_ms"])

    @classmethod
    def start(cls, plan: JobPlan, options: Mapping[str, Any], abandoned_runs: list[str] | None = None) -> RunManifest:
        """A `running` manifest for the plan, written at once."""
        from transforms.prompts.render import template_version

        used = {p.id: p.version for p in plan.registry.policies().values()}
        manifest = cls(
            run_id=plan.run_id,
            output=plan.output,
            started_at=_now(),
            options={k: v for k, v in options.items() if _jsonable(v)},
            model=plan.context.model,
            template_version=template_version(plan.template),
            input_files=list(plan.input_files),
            input_counts=dict(plan.input_counts),
            policies=used,
            judge_settings={
                **dataclasses.asdict(plan.context.settings),
                "calibration_version": plan.context.calibration.version if plan.context.calibration else None,
            },
            dedup=plan.dedup,
            abandoned_runs=list(abandoned_runs or []),
        )
        manifest.write()
        return manifest

    @property
    def path(self) -> str:
        return FileSystems.join(self.output, "_runs", f"{self.run_id}.json")

    def finish(
        self,
        rows_read: int,
        counters: Mapping[str, Mapping[str, int]],
        likely_typo_of: Callable[[str], str | None] = lambda _: None,
    ) -> None:
        """Record the counts and the accounting check; `succeeded` only when the books balance."""
        self.rows_read = rows_read
        self.unknown_tenants = {
            tenant: {"conversations": n, "likely_typo_of": likely_typo_of(tenant)}
            for tenant, n in sorted(counters.get(UNKNOWN_TENANT_COUNTER, {}).items())
        }
        self.per_tenant = books.per_tenant_table(counters)
        prefixes = ("error:", REPAIR_COUNTER_PREFIX, ENGINE_COST_PREFIX)  # engine cost is not a count to balance
        self.totals = {kind: sum(by.values()) for kind, by in sorted(counters.items()) if not kind.startswith(prefixes)}
        self.engine_seconds = round(sum(counters.get(ENGINE_MS, {}).values()) / 1000, 3)
        self.error_counts = {
            k.removeprefix("error:"): sum(v.values()) for k, v in counters.items() if k.startswith("error:")
        }
        self.input_repairs = {
            k.removeprefix(REPAIR_COUNTER_PREFIX): sum(v.values())
            for k, v in sorted(counters.items())
            if k.startswith(REPAIR_COUNTER_PREFIX)
        }
        self.accounting_problems = books.check_accounting(rows_read, counters)
        self.status = "failed" if self.accounting_problems else "succeeded"
        self.finished_at = _now()
        self.write()

    def fail(self, exc: BaseException) -> None:
        """Record a failed run."""
        self.status = "failed"
        self.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.finished_at = _now()
        try:
            self.write()
        except Exception:
            log.exception("could not write the failed run's manifest")

    def write(self) -> None:
        _write_json(self.path, dataclasses.asdict(self))

    def summary_line(self) -> str:
        """One line for the log: rows, verdicts, dead letters."""
        totals = self.totals
        return (
            f"{self.rows_read} rows read, {totals.get('verdicts_written', 0)} verdicts written, "
            f"{sum(self.error_counts.values())} dead letters ({totals.get('dead_letters_already_recorded', 0)} more "
            f"already recorded), {totals.get('units_already_done', 0)} units already done; manifest {self.path}"
        )


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
