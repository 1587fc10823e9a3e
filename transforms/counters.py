"""Per-tenant accounting counters, incremented inside DoFns and read back by the job when the run ends."""

from __future__ import annotations

from apache_beam.metrics import Metrics

NAMESPACE = "accounting"


def count(kind: str, tenant: str | None, amount: int = 1) -> None:
    """Add `amount` to the run's `kind` counter for `tenant` (call inside a DoFn)."""
    Metrics.counter(NAMESPACE, f"{kind}|{tenant or '?'}").inc(amount)
