"""Kill -9 in the middle of inference, rerun the same command: no duplicates, nothing lost (real engine)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import polars as pl
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.real_engine

REPO = pathlib.Path(__file__).resolve().parents[1]


# Some rows of two sample files: ~10 units in 3 engine batches of ~25 s, time to kill after the first (the whole
# sample, 75 units, made this test 419 s; the first 12 rows, ~23 units, 313 s; these 6 rows 234 s, in the full
# suite; two engine starts of ~75 s each included). Row 9 of the 27th is the sample's one row with nothing to judge.
ROWS = {"conversations-2026-11-26.parquet": [0, 1, 2], "conversations-2026-11-27.parquet": [7, 8, 9]}


def _write_input(folder: pathlib.Path) -> str:
    folder.mkdir()
    for name, rows in ROWS.items():
        pq.write_table(pq.read_table(REPO / "samples" / "logs" / name).take(rows), folder / name)
    return str(folder / "*.parquet")


def _job(sample: str, out: pathlib.Path) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.moderate", "--input", sample, "--output", str(out),
        "--flush-rows", "2", "--batch-size", "4", "--max-tokens", "24", "--run-id", "{run}",
    ]  # fmt: skip


def _verdict_files(out: pathlib.Path) -> list[pathlib.Path]:
    return sorted(out.glob("verdicts/*/*/*.parquet"))


def test_real_engine_killed_run_resumes_without_duplicates_or_loss(tmp_path):
    out = tmp_path / "out"
    sample = _write_input(tmp_path / "in")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = [a.replace("{run}", "killed") for a in _job(sample, out)]
    with open(tmp_path / "killed.log", "wb") as log:
        process = subprocess.Popen(first, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 600
        while not _verdict_files(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert process.poll() is None, "the job finished before it could be killed; see killed.log"
        assert _verdict_files(out), "no verdict was published within 10 minutes"
        os.killpg(process.pid, signal.SIGKILL)  # the job and its engine processes, mid-inference
        process.wait()
    published = pl.read_parquet(_verdict_files(out))
    killed_manifest = json.loads((out / "_runs" / "killed.json").read_text())
    assert killed_manifest["status"] == "running"  # never marked complete

    second = [a.replace("{run}", "resumed") for a in _job(sample, out)]
    done = subprocess.run(second, cwd=REPO, env=env, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    manifest = json.loads((out / "_runs" / "resumed.json").read_text())
    verdicts = pl.read_parquet(_verdict_files(out))
    assert manifest["status"] == "succeeded" and manifest["accounting_problems"] == []
    assert verdicts["resume_key"].n_unique() == len(verdicts), "a unit was judged twice"
    assert manifest["totals"]["units_already_done"] == published["resume_key"].n_unique()
    assert manifest["totals"]["verdicts_written"] == len(verdicts) - len(published)
    dead_units = manifest["totals"].get("units_dead_lettered", 0)
    assert len(verdicts) + dead_units == manifest["totals"]["units_made"], "a unit was lost"
    assert manifest["abandoned_runs"] == ["killed"]
    assert json.loads((out / "_runs" / "killed.json").read_text())["status"] == "abandoned"
    # A third run of the same night has nothing left to do.
    again = [a.replace("{run}", "again") for a in _job(sample, out)]
    assert subprocess.run(again, cwd=REPO, env=env, capture_output=True, timeout=900).returncode == 0
    assert len(pl.read_parquet(_verdict_files(out))) == len(verdicts)
    # the sample's one bad row: its dead letter, like the verdicts, is published once however often it is rerun
    keys = pl.read_parquet(sorted(out.glob("errors/*/*.parquet")))["dead_letter_key"]
    assert keys.n_unique() == len(keys) == 1
