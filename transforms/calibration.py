"""Calibrated P(unsafe): a per-tenant temperature on the guard's log-odds, fitted from labelled verdicts.

`python -m pipelines.calibrate` fits and writes a calibration file; the job loads it with `--calibration FILE`
and then decides on the calibrated probability (`p_calibrated` on every row, with `calibration_version`). The
raw `p_unsafe` stays on the row. Pure value type + its application; fitting lives in `pipelines.calibrate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping

_EPS = 1e-12


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Temperatures per tenant (and one for every other tenant): p' = sigmoid(logit(p) / T)."""

    global_temperature: float
    tenant_temperatures: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fitted_on: Mapping[str, int] = dataclasses.field(default_factory=dict)  # tenant (or "*") → labels used

    def __post_init__(self) -> None:
        for name, t in [("*", self.global_temperature), *self.tenant_temperatures.items()]:
            if not (t > 0 and math.isfinite(t)):
                raise ValueError(f"calibration temperature of {name!r} must be a positive number, got {t!r}")

    @property
    def version(self) -> str:
        """Content hash: the same map has the same version everywhere (recorded on every verdict row)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def temperature(self, tenant_id: str) -> float:
        return self.tenant_temperatures.get(tenant_id, self.global_temperature)

    def apply(self, tenant_id: str, p_unsafe: float | None) -> float | None:
        """The calibrated P(unsafe) of a tenant's unit (None stays None)."""
        if p_unsafe is None:
            return None
        return sigmoid(logit(p_unsafe) / self.temperature(tenant_id))

    def to_json(self) -> str:
        data = {
            "method": "temperature",
            "global_temperature": self.global_temperature,
            "tenant_temperatures": dict(sorted(self.tenant_temperatures.items())),
            "fitted_on": dict(sorted(self.fitted_on.items())),
        }
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        try:
            data = json.loads(text)
            if data.get("method") != "temperature":
                raise ValueError(f"method must be 'temperature', got {data.get('method')!r}")
            return cls(
                float(data["global_temperature"]),
                {str(k): float(v) for k, v in data.get("tenant_temperatures", {}).items()},
                {str(k): int(v) for k, v in data.get("fitted_on", {}).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}: not a calibration file: {exc}") from exc
