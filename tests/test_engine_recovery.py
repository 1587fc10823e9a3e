"""Engine failures behind the seam (fake engine): a dead engine is rebuilt, a failing batch is split."""

from __future__ import annotations

import dataclasses
import pathlib

import polars as pl

from pipelines.job.moderate import run
from transforms.engines.fake_engine import FakeEngine, FakeEngineSpec

SAMPLES = str(pathlib.Path(__file__).resolve().parents[1] / "samples" / "logs" / "*.parquet")
LOADS: list[str] = []


class EngineDeadError(RuntimeError):
    """Named like vLLM's error for an engine whose core process is gone."""


@dataclasses.dataclass(frozen=True)
class DiesOnFirstCallSpec(FakeEngineSpec):
    """The first engine it builds dies on its first batch; engines built after that work."""

    model_name: str = "fake-dies-once"

    def load(self) -> FakeEngine:
        LOADS.append(self.model_name)
        engine = FakeEngine(self)
        if len(LOADS) == 1:

            def dead(*args, **kwargs):
                raise EngineDeadError("EngineCore process died unexpectedly")

            engine.complete = dead
        return engine


def test_fake_engine_dead_engine_is_rebuilt_and_nothing_is_lost(tmp_path):
    LOADS.clear()
    manifest = run(
        ["--input", SAMPLES, "--output", str(tmp_path), "--engine", "fake"], engine_spec=DiesOnFirstCallSpec()
    )
    assert LOADS == ["fake-dies-once", "fake-dies-once"]  # built, died, rebuilt once
    assert manifest.status == "succeeded" and "engine_error" not in manifest.error_counts
    verdicts = pl.read_parquet(f"{tmp_path}/verdicts/**/*.parquet")
    assert len(verdicts) == manifest.totals["units_made"]
