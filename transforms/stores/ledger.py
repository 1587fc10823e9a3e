"""Runner-independent books: counts a run publishes itself, so the end-of-run check holds on any runner.

Two homes, both idempotent when a runner re-executes a bundle:
- **Published files** carry the counts of their own rows in their Parquet footer (`COUNTS_KEY`), and are named
  by a digest of their rows' keys: a re-executed bundle that publishes the same rows again replaces the same file.
- **Ledger records** hold what is not a published row (units made, rows that became units, rows of other
  days, ...): each counting DoFn keeps a `BundleLedger` and publishes one small JSON record per bundle at
  `OUTPUT/_ledger/<run_id>/<step>-<digest>.json` (written to staging, then renamed), named by a digest of the keys
  of the elements the bundle saw: a re-executed bundle over the same elements replaces its record, never adds one.

A runner that re-splits a failed bundle differently would publish overlapping records; the books then show more
than was read and the check fails loudly, never silently.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping

from apache_beam.io.filesystems import FileSystems

COUNTS_KEY = b"rsafe.counts"
"""Parquet footer key of a published file's own counts: JSON {kind: {tenant: n}}."""
_MASK = (1 << 128) - 1

Counts = dict[str, dict[str, int]]


def _key_int(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest(), "big")


def key_digest(keys: Iterable[str]) -> tuple[str, int]:
    """(order-independent digest, count) of `keys`: the same set of keys gives the same digest on any worker."""
    total, n = 0, 0
    for key in keys:
        total = (total + _key_int(key)) & _MASK
        n += 1
    return f"{total:032x}", n


def ledger_folder(output: str, run_id: str) -> str:
    """Where a run's ledger records are published."""
    return FileSystems.join(output, "_ledger", run_id)


class BundleLedger:
    """Counts of one DoFn in one bundle, published as one ledger record when the bundle finishes.

    `start()` in `start_bundle`, `saw(key)` once per element (its stable identity), `count(...)` as often as
    needed, `publish()` in `finish_bundle` (a side effect, so it also works where a runner drops what
    `finish_bundle` emits).
    """

    def __init__(self, output: str, run_id: str, step: str) -> None:
        self._output, self._run_id, self._step = output, run_id, step
        self.start()

    def start(self) -> None:
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._digest, self._elements = 0, 0

    def saw(self, key: str) -> None:
        self._digest = (self._digest + _key_int(key)) & _MASK
        self._elements += 1

    def count(self, kind: str, tenant: str | None, amount: int = 1) -> None:
        self._counts[(kind, tenant or "?")] += amount

    def publish(self) -> str | None:
        """Publish this bundle's record (none for a bundle that saw nothing); returns its path."""
        if not self._elements:
            return None
        counts: Counts = defaultdict(dict)
        for (kind, tenant), n in sorted(self._counts.items()):
            counts[kind][tenant] = n
        record = {"step": self._step, "elements": self._elements, "counts": counts}
        name = f"{self._step}-{self._digest:032x}-{self._elements}.json"
        path = FileSystems.join(ledger_folder(self._output, self._run_id), name)
        _publish_bytes(self._output, self._run_id, path, json.dumps(record, sort_keys=True).encode())
        self.start()
        return path


def _publish_bytes(output: str, run_id: str, path: str, data: bytes) -> None:
    """Write `data` to staging, then rename it to `path` (replacing a record a re-executed bundle wrote)."""
    staged = FileSystems.join(output, "_staging", run_id, f"ledger-{uuid.uuid4().hex}.json")
    for folder in (staged.rsplit("/", 1)[0], path.rsplit("/", 1)[0]):
        ensure_folder(folder)
    with FileSystems.create(staged) as handle:
        handle.write(data)
    FileSystems.rename([staged], [path])


def ensure_folder(folder: str) -> None:
    """Make a local folder (object stores have none); another worker making it meanwhile is fine."""
    if "://" in folder or FileSystems.exists(folder):
        return
    try:
        FileSystems.mkdirs(folder)
    except OSError:
        if not FileSystems.exists(folder):
            raise


def add_counts(into: Counts, counts: Mapping[str, Mapping[str, int]]) -> None:
    """Add `counts` ({kind: {tenant: n}}) into `into`."""
    for kind, by_tenant in counts.items():
        target = into.setdefault(kind, {})
        for tenant, n in by_tenant.items():
            target[tenant] = target.get(tenant, 0) + int(n)
