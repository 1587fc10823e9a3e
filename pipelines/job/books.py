"""The run's books, kept by what the run publishes (`transforms.stores.ledger`), not by a runner's metrics.

The counting steps below publish per-bundle ledger records; the writers put each file's own counts in its
footer. `read_books` adds both up at the end of the run for `accounting.check_accounting`. Runner metrics
(`accounting.read_counters`) are still incremented where the runner has them, as telemetry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from transforms.io.normalise import repair_kinds
from transforms.prompts.units import MakeUnitsDoFn
from transforms.records import Conversation, ModerationUnit
from transforms.stores.ledger import COUNTS_KEY, BundleLedger, Counts, add_counts, ledger_folder
from transforms.stores.telemetry import REPAIR_COUNTER_PREFIX, UNKNOWN_TENANT_COUNTER, count

log = logging.getLogger(__name__)


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


class SkipPublished(_LedgerDoFn):
    """Counts every unit made; drops (and counts) those whose verdict an earlier run already published."""

    def __init__(self, output: str, run_id: str, done_keys: frozenset[str]) -> None:
        super().__init__(output, run_id, "skip-published")
        self._done = done_keys

    def process(self, unit: ModerationUnit) -> Iterator[ModerationUnit]:
        self.ledger.saw(unit.resume_key)
        self.ledger.count("units_made", unit.tenant_id)
        count("units_made", unit.tenant_id)
        if unit.resume_key in self._done:
            self.ledger.count("units_already_done", unit.tenant_id)
            count("units_already_done", unit.tenant_id)
            return
        yield unit


class CountSkipped(_LedgerDoFn):
    """Counts the rows of conversations of another day (`--date`)."""

    def __init__(self, output: str, run_id: str) -> None:
        super().__init__(output, run_id, "skipped")

    def process(self, conversation: Conversation) -> Iterator:
        self.ledger.saw(conversation_key(conversation))
        self.ledger.count("rows_skipped", conversation.tenant_id, conversation.source_rows)
        count("rows_skipped", conversation.tenant_id, conversation.source_rows)
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
