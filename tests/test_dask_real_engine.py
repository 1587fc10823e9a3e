"""The job on 2 local Dask workers with the real vLLM engine (embedded guard) on the sample logs: one engine per
worker process, every row a verdict or a dead letter, the books balance. Slow (two engines start, on 2 cores they
share the CPU); not run in the fake-engine CI selection."""

from __future__ import annotations

import pathlib

import polars as pl
import pytest

from pipelines.embedded_model import guard_model_name
from pipelines.moderate import run
from tests.test_pipeline_fake_engine import assert_books_balance, read_manifest

pytestmark = pytest.mark.real_engine
pytest.importorskip("distributed")

SAMPLES = str(pathlib.Path(__file__).resolve().parents[1] / "samples" / "logs" / "conversations-*.parquet")
# two files (two Dask partitions, so both workers' engines take part), 31 rows: on 2 shared cores the full sample
# with 64-token answers took 626 s; this keeps the test to a few minutes


def test_real_engine_sample_logs_on_two_dask_workers(tmp_path):
    argv = ["--input", SAMPLES, "--output", str(tmp_path), "--run-id", "dask-real"]
    run([*argv, "--runner", "DaskRunner", "--dask-workers", "2", "--kv-cache-gib", "0.5", "--max-tokens", "32"])
    manifest = read_manifest(tmp_path, "dask-real")
    assert_books_balance(manifest)
    verdicts = pl.read_parquet(tmp_path / "verdicts" / "**" / "*.parquet")
    assert verdicts.height == manifest["totals"]["verdicts_written"] > 0
    assert verdicts["resume_key"].n_unique() == verdicts.height
    assert set(verdicts["model"]) == {guard_model_name()}
    assert verdicts["p_unsafe"].is_not_null().all()
