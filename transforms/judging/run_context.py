"""What every verdict row of a run records about how it was produced (below the judge step and the cache)."""

from __future__ import annotations

import dataclasses

from transforms.judging.calibration import Calibration
from transforms.judging.decisions import JudgeSettings


@dataclasses.dataclass(frozen=True)
class RunContext:
    """The run, the model label and the judge settings behind every verdict row of a run."""

    run_id: str
    model: str
    settings: JudgeSettings
    calibration: Calibration | None = None  # --calibration: decisions on the calibrated P(unsafe)
