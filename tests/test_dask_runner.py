"""The job on Dask distributed (Beam's DaskRunner with `pipelines.job.dask_support`), FAKE engine: the same verdicts,
dead letters and balanced books as the in-process runner, also when a worker is killed mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from pipelines.job.moderate import run
from pipelines.job.usage import reject_unknown_args
from scripts.generate_malformed_logs import write_malformed_corpus
from tests.test_pipeline_fake_engine import SAMPLES, assert_books_balance, read_manifest
from transforms.engines.cpu_serving import WORKER_CORES_ENV

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The sample logs plus the malformed corpus (every kind of dead letter), in one folder."""
    folder = tmp_path_factory.mktemp("dask-in")
    for path in SAMPLES.glob("*.parquet"):
        shutil.copy(path, folder / path.name)
    write_malformed_corpus(folder / "malformed")
    for path in (folder / "malformed").glob("*.parquet"):
        path.rename(folder / f"malformed-{path.name}")
    return folder


def _job(out: Path, inputs: Path, run_id: str, *extra: str) -> dict:
    argv = ["--engine", "fake", "--input", str(inputs / "*.parquet"), "--output", str(out), "--run-id", run_id]
    run([*argv, *extra])
    return read_manifest(out, run_id)


def _verdicts(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "verdicts" / "**" / "*.parquet")


def _dead_letters(out: Path) -> set[tuple[str, str]]:
    errors = pl.read_parquet(out / "errors" / "**" / "*.parquet")
    return set(errors.select("dead_letter_key", "error_kind").rows())


def test_in_process_and_two_dask_workers_give_the_same_verdicts_dead_letters_and_books(tmp_path, inputs):
    local = _job(tmp_path / "local", inputs, "local")
    dask = _job(tmp_path / "dask", inputs, "dask", "--runner", "DaskRunner", "--dask-workers", "2")
    assert (local["dedup"], dask["dedup"]) == ("worker", "shuffle")
    for manifest in (local, dask):
        assert_books_balance(manifest)
    assert dask["runner_metrics"] is None  # Beam's DaskRunner has none: the books are the run's own
    local_rows, dask_rows = _verdicts(tmp_path / "local"), _verdicts(tmp_path / "dask")
    assert dask_rows["resume_key"].n_unique() == dask_rows.height  # no verdict twice
    assert set(local_rows.select("resume_key", "verdict").rows()) == set(
        dask_rows.select("resume_key", "verdict").rows()
    )
    assert _dead_letters(tmp_path / "local") == _dead_letters(tmp_path / "dask")
    assert len(_dead_letters(tmp_path / "dask")) > 5
    same = ("rows_read",)
    assert {k: local[k] for k in same} == {k: dask[k] for k in same}
    ignore = {"units_deduplicated"}  # which copy is "the first" may differ; the verdict does not
    assert {k: v for k, v in local["totals"].items() if k not in ignore} == {
        k: v for k, v in dask["totals"].items() if k not in ignore
    }


def test_dask_runner_options_are_known_by_short_name_and_module_path():
    for runner in ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"):
        reject_unknown_args(["--runner", runner, "--dask_client_address", "tcp://h:8786", "--dask_npartitions", "4"])
    with pytest.raises(ValueError, match="unknown option"):
        reject_unknown_args(["--runner", "DaskRunner", "--dask_client_adress", "tcp://h:8786"])


def _worker_cores(client) -> list[str | None]:
    return sorted(client.run(lambda: os.environ.get(WORKER_CORES_ENV)).values(), key=str)


def test_killing_a_dask_worker_mid_run_completes_without_duplicates(tmp_path, inputs):
    from pipelines.job.dask_support import local_cluster
    from transforms.engines.cpu_cores import allowed_cores, slice_of_worker

    cluster = local_cluster(2)
    client = distributed.Client(cluster)
    slices = sorted(slice_of_worker(i, 2, allowed_cores()) for i in range(2))
    assert _worker_cores(client) == slices  # each worker's engine on its own cores
    out = tmp_path / "out"
    result: dict = {}

    def job() -> None:
        try:
            extra = ["--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address]
            extra += ["--batch-size", "8", "--flush-rows", "8", "--fake-seconds-per-call", "0.3"]
            result["manifest"] = _job(out, inputs, "killed", *extra)
        except BaseException as exc:  # reported below
            result["error"] = exc

    try:
        thread = threading.Thread(target=job)
        thread.start()
        deadline = time.monotonic() + 60
        while not list((out / "verdicts").glob("*/*/*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = client.run(os.getpid)
        result["killed_mid_run"] = thread.is_alive() and "manifest" not in result
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # the nanny restarts it; Dask re-runs its tasks
        thread.join(120)
        client.wait_for_workers(2, timeout=60)
        restarted_cores = _worker_cores(client)
    finally:
        client.close()
        cluster.close()
    assert "error" not in result, result.get("error")
    assert result["killed_mid_run"]
    assert restarted_cores == slices  # the restarted worker got its slice back
    assert_books_balance(result["manifest"])
    rows = _verdicts(out)
    assert rows["resume_key"].n_unique() == rows.height
