"""Calibrated P(unsafe): a per-tenant map on the guard's log-odds, fitted from labelled verdicts.

`python -m pipelines.calibrate` fits and writes a calibration file; the job loads it with `--calibration FILE`
and then decides on the calibrated probability (`p_calibrated` on every row, with `calibration_version`). The
raw `p_unsafe` stays on the row. Pure value type + its application; fitting lives in `pipelines.evaluation.calibrate`.

Each map is p' = sigmoid(slope · logit(p) + intercept): `identity` (1, 0), `temperature` T (1/T, 0: sharpens or
softens, cannot move the 0.5 point) or `platt` (both fitted: can move the decision point). The file (format 2)
stores its own `version` (a content hash, checked on load); a format-1 file (`"method": "temperature"`) still loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping

_EPS = 1e-12
METHODS = ("identity", "temperature", "platt")
FORMAT = 2


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclasses.dataclass(frozen=True)
class LogitMap:
    """p' = sigmoid(slope · logit(p) + intercept), named by the method that fitted it."""

    slope: float = 1.0
    intercept: float = 0.0
    method: str = "identity"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {list(METHODS)}, got {self.method!r}")
        if not (self.slope > 0 and math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise ValueError(f"calibration slope must be a positive number and the intercept finite, got "
                             f"{self.slope!r}, {self.intercept!r}")  # fmt: skip

    @classmethod
    def temperature(cls, t: float) -> LogitMap:
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"calibration temperature must be a positive number, got {t!r}")
        return cls(1 / t, 0.0, "temperature")

    def apply(self, p: float) -> float:
        return sigmoid(self.slope * logit(p) + self.intercept)

    def to_dict(self) -> dict:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One map per tenant with enough labels, and one for every other tenant."""

    global_map: LogitMap = LogitMap()
    tenant_maps: Mapping[str, LogitMap] = dataclasses.field(default_factory=dict)
    fitted_on: Mapping[str, int] = dataclasses.field(default_factory=dict)  # tenant (or "*") → labels used

    def _content(self) -> dict:
        return {
            "format": FORMAT,
            "global": self.global_map.to_dict(),
            "tenants": {t: m.to_dict() for t, m in sorted(self.tenant_maps.items())},
            "fitted_on": dict(sorted(self.fitted_on.items())),
        }

    @property
    def version(self) -> str:
        """Content hash: the same map has the same version everywhere (recorded on every verdict row)."""
        return hashlib.sha256(json.dumps(self._content(), sort_keys=True).encode()).hexdigest()[:12]

    def map_for(self, tenant_id: str) -> LogitMap:
        return self.tenant_maps.get(tenant_id, self.global_map)

    def apply(self, tenant_id: str, p_unsafe: float | None) -> float | None:
        """The calibrated P(unsafe) of a tenant's unit (None stays None)."""
        return None if p_unsafe is None else self.map_for(tenant_id).apply(p_unsafe)

    def to_json(self) -> str:
        return json.dumps({**self._content(), "version": self.version}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        try:
            data = json.loads(text)
            if data.get("method") == "temperature":  # format 1: temperatures only
                return cls(
                    LogitMap.temperature(float(data["global_temperature"])),
                    {str(k): LogitMap.temperature(float(v)) for k, v in data.get("tenant_temperatures", {}).items()},
                    {str(k): int(v) for k, v in data.get("fitted_on", {}).items()},
                )
            if data.get("format") != FORMAT:
                raise ValueError(
                    f"format must be {FORMAT} (or a format-1 temperature file), got {data.get('format')!r}"
                )

            def read(entry: dict) -> LogitMap:
                return LogitMap(float(entry["slope"]), float(entry["intercept"]), str(entry["method"]))

            calibration = cls(
                read(data["global"]),
                {str(k): read(v) for k, v in data.get("tenants", {}).items()},
                {str(k): int(v) for k, v in data.get("fitted_on", {}).items()},
            )
            if data.get("version") != calibration.version:
                raise ValueError(f"version {data.get('version')!r} does not match its content "
                                 f"({calibration.version}): the file was edited")  # fmt: skip
            return calibration
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{source}: not a calibration file: {exc}") from exc
