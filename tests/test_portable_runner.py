"""The job through Beam's portable Runner API path (the one Dataflow, Flink and Spark take), FAKE engine:
`--runner PortableRunner --job_endpoint embed` (an in-process job server), SDK workers in a separate worker-pool
process (`--environment_type EXTERNAL`). Offline: nothing is downloaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.test_pipeline_fake_engine import assert_books_balance, moderate, read_manifest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture
def worker_pool():
    """Beam's SDK worker pool in its own process; it starts workers as `python` from PATH, so ours goes first."""
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("localhost", port)) == 0:
                break
        time.sleep(0.2)
    yield f"localhost:{port}"
    pool.terminate()
    pool.wait(10)


def _verdicts(out: Path) -> set[tuple[str, str]]:
    return set(pl.read_parquet(out / "verdicts" / "**" / "*.parquet").select("resume_key", "verdict").rows())


def test_sample_logs_through_the_portable_runner_with_external_sdk_workers(tmp_path, worker_pool):
    moderate(tmp_path / "local", run_id="local")
    portable = ["--runner", "PortableRunner", "--job_endpoint", "embed"]
    moderate(tmp_path / "portable", *portable, "--environment_type", "EXTERNAL", "--environment_config", worker_pool)
    manifest = read_manifest(tmp_path / "portable", "run-1")
    assert_books_balance(manifest)
    assert manifest["dedup"] == "shuffle"
    # the runner's metrics (telemetry) agree with the books here
    assert sum(manifest["runner_metrics"]["units_made"].values()) == manifest["totals"]["units_made"]
    assert _verdicts(tmp_path / "portable") == _verdicts(tmp_path / "local")
    assert read_manifest(tmp_path / "local", "local")["totals"] == manifest["totals"]
