"""Telemetry: per-tenant counters in the runner's own metrics, incremented inside DoFns beside the books and read
back by the job when the run ends (into the manifest's `runner_metrics`). Never the books: a runner may have no
metrics, or count a retried bundle twice; the run's books are its ledger records and footer counts (`ledger`)."""

from __future__ import annotations

import functools

from apache_beam.metrics import Metrics

NAMESPACE = "accounting"
UNKNOWN_TENANT_COUNTER = "conversations_unknown_tenant"
"""Conversations judged under the default policy because their tenant is not listed (counted per tenant)."""
REPAIR_COUNTER_PREFIX = "repair:"
"""`repair:<kind>`: conversations that became units with at least one input repair of that kind."""
ENGINE_COST_PREFIX = "engine_"
"""Books kinds of what the engine spent per tenant (telemetry, not counts the books balance):"""
ENGINE_MS = "engine_ms"
"""engine milliseconds, each batch's time shared by its judged groups' tokens;"""
ENGINE_TOKENS = "engine_tokens"
"""prompt + generated tokens of the groups the engine judged (copies and cache hits cost none)."""


@functools.lru_cache(maxsize=4096)
def _counter(name: str):
    # A DelegatingCounter finds the running bundle's metrics container at each inc(), so one object per name can
    # be reused everywhere (as Beam recommends); building a new one per element cost ~5 µs of every count.
    return Metrics.counter(NAMESPACE, name)


def count(kind: str, tenant: str | None, amount: int = 1) -> None:
    """Add `amount` to the run's `kind` counter for `tenant` (call inside a DoFn)."""
    _counter(f"{kind}|{tenant or '?'}").inc(amount)
