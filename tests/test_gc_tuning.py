"""The job runs its pipeline with fewer garbage collections, and puts the collector's settings back after."""

from __future__ import annotations

import gc
from pathlib import Path

import pipelines.job.moderate as moderate
from pipelines.job.gc_tuning import YOUNG_THRESHOLD, fewer_collections

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "logs"


def test_fewer_collections_freezes_and_restores() -> None:
    before = gc.get_threshold()
    with fewer_collections(12_345):
        assert gc.get_threshold()[0] == 12_345 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_pipeline_runs_with_fewer_collections(tmp_path: Path, monkeypatch) -> None:
    seen: list[int] = []
    build = moderate.build_pipeline

    def recording_build(pipeline, plan):
        seen.append(gc.get_threshold()[0])
        return build(pipeline, plan)

    monkeypatch.setattr(moderate, "build_pipeline", recording_build)
    before = gc.get_threshold()
    moderate.run(["--engine", "fake", "--input", str(SAMPLES / "*.parquet"), "--output", str(tmp_path / "out")])
    assert seen == [YOUNG_THRESHOLD] and gc.get_threshold() == before
