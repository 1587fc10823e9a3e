"""The job on 2 local Dask workers with the real vLLM engine (embedded guard) on the sample logs: one engine per
worker process, each on its own cores, every row a verdict or a dead letter, the books balance. Slow (two engines
start, on 2 cores they share the CPU); not run in the fake-engine selection."""

from __future__ import annotations

import pathlib

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines.job.moderate import run
from tests.test_pipeline_fake_engine import assert_books_balance, read_manifest
from transforms.engines.embedded_model import guard_model_name

pytestmark = pytest.mark.real_engine
pytest.importorskip("distributed")

SAMPLES = sorted((pathlib.Path(__file__).resolve().parents[1] / "samples" / "logs").glob("conversations-*.parquet"))
ROWS_PER_FILE = 4
# two files (two Dask partitions, so both workers' engines take part) of the first rows of the two sample
# conversation files: the engines' start on 2 shared cores is most of the time (the full sample with 64-token
# answers took 626 s; this, 445 s while both engines were bound to both cores, 170 s with a core each)


def test_real_engine_sample_logs_on_two_dask_workers(tmp_path):
    for path in SAMPLES:
        (tmp_path / "in").mkdir(exist_ok=True)
        pq.write_table(pq.read_table(path).slice(0, ROWS_PER_FILE), tmp_path / "in" / path.name)
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--run-id", "dask-real"]
    run([*argv, "--runner", "DaskRunner", "--dask-workers", "2", "--kv-cache-gib", "0.5", "--max-tokens", "32"])
    manifest = read_manifest(out, "dask-real")
    assert_books_balance(manifest)
    assert manifest["rows_read"] == ROWS_PER_FILE * len(SAMPLES)
    verdicts = pl.read_parquet(out / "verdicts" / "**" / "*.parquet")
    assert verdicts.height == manifest["totals"]["verdicts_written"] > 0
    assert verdicts["resume_key"].n_unique() == verdicts.height
    assert set(verdicts["model"]) == {guard_model_name()}
    assert verdicts["p_unsafe"].is_not_null().all()
