"""Nothing lost: per-tenant counts during the run and the equations checked at its end.

The counts are the run's books (`pipelines.job.books`: ledger records and footer counts the run publishes), the
same on every runner; runner metrics are kept as telemetry.

Rows: every input row read (counted from the Parquet footers) is in a conversation that became units, a
dead-letter record, or a conversation of another day (`--date`).
Units: every unit made is a verdict row written, a unit dead letter, or a unit already published by an
earlier run (resume).
Dead letters: a rerun's dead letter that an earlier run already published (same `DeadLetter.key`) still accounts
for its rows and unit, and is counted as already recorded instead of being written again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from transforms.stores.ledger import BundleLedger
from transforms.stores.telemetry import NAMESPACE, count

ROW_COUNTS = ("rows_to_units", "rows_dead_lettered", "rows_skipped")
ALREADY_RECORDED = "dead_letters_already_recorded"
UNIT_COUNTS = ("units_made", "verdicts_written", "units_dead_lettered", "units_already_done")


class CountDeadLetters(beam.DoFn):
    """Counts dead letters (their input rows, and units when it is a unit's) in the run's ledger and passes on
    as rows those not already published by an earlier run (`recorded`: their keys); those are counted as
    already recorded. The published ones are counted by kind in the footers of the files they are written to."""

    def __init__(self, output: str, run_id: str, step: str, recorded: frozenset[str] = frozenset()) -> None:
        self._where = (output, run_id, f"dead-letters-{step}")
        self._recorded = recorded
        self._ledger: BundleLedger | None = None

    def start_bundle(self) -> None:
        self._ledger = BundleLedger(*self._where)

    def finish_bundle(self) -> None:
        self._ledger.publish()

    def _count(self, kind: str, tenant: str | None, amount: int = 1) -> None:
        self._ledger.count(kind, tenant, amount)
        count(kind, tenant, amount)  # runner metric: telemetry only

    def process(self, dead_letter) -> Iterator[dict]:
        self._ledger.saw(dead_letter.key)
        if dead_letter.unit is not None:
            self._count("units_dead_lettered", dead_letter.tenant_id)
        if dead_letter.rows:
            self._count("rows_dead_lettered", dead_letter.tenant_id, dead_letter.rows)
        if dead_letter.key in self._recorded:
            self._count(ALREADY_RECORDED, dead_letter.tenant_id)
            return
        count(f"error:{dead_letter.error_kind}", dead_letter.tenant_id)
        yield dead_letter.to_row()


def read_counters(result) -> dict[str, dict[str, int]] | None:
    """{kind: {tenant: n}} from a finished pipeline's committed (else attempted) counters: telemetry, not the
    books (`pipelines.job.books`); None where the runner reports no metrics (Beam's DaskRunner raises)."""
    counters: dict[str, dict[str, int]] = defaultdict(dict)
    try:
        queried = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # NotImplementedError on Dask; some portable runners report none
        return None
    for counter in queried:
        kind, _, tenant = counter.key.metric.name.partition("|")
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[kind][tenant] = counters[kind].get(tenant, 0) + int(value)
    return dict(counters)


def check_accounting(rows_read: int, counters: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The equations that do not hold, each saying which counts differ (empty when all is accounted for)."""
    problems = []
    accounted = {kind: sum(counters.get(kind, {}).values()) for kind in ROW_COUNTS}
    if rows_read != sum(accounted.values()):
        parts = " + ".join(f"{kind} {n}" for kind, n in accounted.items())
        problems.append(f"rows read {rows_read} != {parts} = {sum(accounted.values())}")
    tenants = set().union(*(counters.get(kind, {}).keys() for kind in UNIT_COUNTS))
    for tenant in sorted(tenants):
        made = counters.get("units_made", {}).get(tenant, 0)
        ends = {kind: counters.get(kind, {}).get(tenant, 0) for kind in UNIT_COUNTS[1:]}
        if made != sum(ends.values()):
            parts = " + ".join(f"{kind} {n}" for kind, n in ends.items())
            problems.append(f"tenant {tenant!r}: units made {made} != {parts} = {sum(ends.values())}")
    return problems


def per_tenant_table(counters: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """{tenant: {kind: n}} for the run manifest."""
    table: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, by_tenant in counters.items():
        for tenant, n in by_tenant.items():
            table[tenant][kind] = n
    return {tenant: dict(sorted(kinds.items())) for tenant, kinds in sorted(table.items())}
