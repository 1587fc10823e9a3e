"""The run's books: what the run counts and publishes itself (`transforms.stores.ledger`), added up and checked at
its end, so that nothing is lost on any runner.

The counting steps below publish per-bundle ledger records; the writers put each file's own counts in its
footer. `read_books` adds both up at the end of the run for `check_accounting`, whose equations say nothing is lost:
- Rows: every input row read (counted from the Parquet footers) is in a conversation that became units, a
  dead-letter record, or a conversation of another day (`--date`).
- Units: every unit made is a verdict row written, a unit dead letter, or a unit already published by an
  earlier run (resume).
- Dead letters: a rerun's dead letter that an earlier run already published (same `DeadLetter.key`) still
  accounts for its rows and unit, and is counted as already recorded instead of being written again.
Runner metrics (`transforms.stores.telemetry`, read back by `read_counters`) are still incremented where the runner
has them, as telemetry, never as the books.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import TaggedOutput

from transforms.io.normalise import repair_kinds
from transforms.prompts.units import MakeUnitsDoFn
from transforms.records import Conversation, ModerationUnit
from transforms.stores.ledger import COUNTS_KEY, BundleLedger, Counts, add_counts, ledger_folder
from transforms.stores.telemetry import NAMESPACE, REPAIR_COUNTER_PREFIX, UNKNOWN_TENANT_COUNTER, count

log = logging.getLogger(__name__)

ROW_COUNTS = ("rows_to_units", "rows_dead_lettered", "rows_skipped")
ALREADY_RECORDED = "dead_letters_already_recorded"
UNIT_COUNTS = ("units_made", "verdicts_written", "units_dead_lettered", "units_already_done")


def conversation_key(conversation: Conversation) -> str:
    """A conversation's identity within a run: its file and first row."""
    return f"{conversation.source_file}\x1f{conversation.source_row}"


class _LedgerDoFn(beam.DoFn):
    """A DoFn that publishes one ledger record per bundle (`self.ledger`)."""

    def __init__(self, output: str, run_id: str, step: str) -> None:
        self._where = (output, run_id, step)
        self.ledger: BundleLedger | None = None

    def start_bundle(self) -> None:
        self.ledger = BundleLedger(*self._where)

    def finish_bundle(self) -> None:
        self.ledger.publish()

    def _count(self, kind: str, tenant: str | None, amount: int = 1) -> None:
        """Count into the bundle's ledger record (the books) and the runner's metric (telemetry only)."""
        self.ledger.count(kind, tenant, amount)
        count(kind, tenant, amount)


class SkipPublished(_LedgerDoFn):
    """Counts every unit made; drops (and counts) those whose verdict an earlier run already published."""

    def __init__(self, output: str, run_id: str, done_keys: frozenset[str]) -> None:
        super().__init__(output, run_id, "skip-published")
        self._done = done_keys

    def process(self, unit: ModerationUnit) -> Iterator[ModerationUnit]:
        self.ledger.saw(unit.resume_key)
        self._count("units_made", unit.tenant_id)
        if unit.resume_key in self._done:
            self._count("units_already_done", unit.tenant_id)
            return
        yield unit


class CountSkipped(_LedgerDoFn):
    """Counts the rows of conversations of another day (`--date`)."""

    def __init__(self, output: str, run_id: str) -> None:
        super().__init__(output, run_id, "skipped")

    def process(self, conversation: Conversation) -> Iterator:
        self.ledger.saw(conversation_key(conversation))
        self._count("rows_skipped", conversation.tenant_id, conversation.source_rows)
        return iter(())


class CountedMakeUnits(MakeUnitsDoFn):
    """`MakeUnitsDoFn` whose rows that became units and unknown-tenant conversations go to the ledger too."""

    def __init__(self, output: str, run_id: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._where = (output, run_id, "make-units")
        self._ledger: BundleLedger | None = None

    def start_bundle(self) -> None:
        self._ledger = BundleLedger(*self._where)

    def finish_bundle(self) -> None:
        self._ledger.publish()

    def process(self, conversation: Conversation) -> Iterator:
        self._ledger.saw(conversation_key(conversation))
        made = False
        for output in super().process(conversation):
            made = made or not isinstance(output, TaggedOutput)
            yield output
        if made:
            self._ledger.count("rows_to_units", conversation.tenant_id, conversation.source_rows)
            for kind in sorted(repair_kinds(conversation.input_repairs)):  # judged conversations with a repair
                self._ledger.count(f"{REPAIR_COUNTER_PREFIX}{kind}", conversation.tenant_id)

    def _note_unknown_tenant(self, tenant_id: str, policy_id: str) -> None:
        self._ledger.count(UNKNOWN_TENANT_COUNTER, tenant_id)
        super()._note_unknown_tenant(tenant_id, policy_id)


def _matching(pattern: str) -> list[str]:
    try:
        return sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
    except Exception:  # nothing published there (an object store raises for an empty prefix)
        return []


def read_books(output: str, run_id: str) -> Counts:
    """{kind: {tenant: n}}: the run's ledger records plus the footer counts of every file it published."""
    books: Counts = {}
    for path in _matching(FileSystems.join(ledger_folder(output, run_id), "*.json")):
        with FileSystems.open(path) as handle:
            add_counts(books, json.loads(handle.read())["counts"])
    published = [
        *_matching(FileSystems.join(output, "verdicts", "*", "*", f"part-{run_id}-*.parquet")),
        *_matching(FileSystems.join(output, "errors", "*", f"part-{run_id}-*.parquet")),
    ]
    for path in published:
        with FileSystems.open(path) as handle:
            metadata = pq.read_metadata(handle).metadata or {}
        if COUNTS_KEY not in metadata:
            log.warning("%s has no counts in its footer (written by an older version?): not in the books", path)
            continue
        add_counts(books, json.loads(metadata[COUNTS_KEY]))
    return books


class CountDeadLetters(_LedgerDoFn):
    """Counts dead letters (their input rows, and units when it is a unit's) in the run's ledger and passes on
    as rows those not already published by an earlier run (`recorded`: their keys); those are counted as
    already recorded. The published ones are counted by kind in the footers of the files they are written to."""

    def __init__(self, output: str, run_id: str, step: str, recorded: frozenset[str] = frozenset()) -> None:
        super().__init__(output, run_id, f"dead-letters-{step}")
        self._recorded = recorded

    def process(self, dead_letter) -> Iterator[dict]:
        self.ledger.saw(dead_letter.key)
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
    books (`read_books`); None where the runner reports no metrics (Beam's DaskRunner raises)."""
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
