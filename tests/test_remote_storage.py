"""The job on object stores, against real servers started by the test (not mocks of the client libraries).

- `s3://` through Beam's S3 filesystem (boto3) against moto's S3 server on a local port
  (`--s3_endpoint_url`, `--s3_access_key_id`, `--s3_secret_access_key`, `--s3_region_name`).
- `gs://` through Beam's GCS filesystem (google-cloud-storage) against `gcp-storage-emulator`, reached by
  `STORAGE_EMULATOR_HOST` (the client library's own emulator switch).

Both read the sample logs from the store, write verdicts, dead letters, manifest, ledger and lease there, and a
second run over the same output resumes (nothing judged twice). Fake engine: this is about storage.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.job.moderate import run
from pipelines.job.run_lease import StoreLease

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "logs"
# Beam's S3 filesystem builds a new boto3 client for every operation (apache_beam/io/aws/s3filesystem.py: one
# `S3IO(options=...)` per call), ~0.5-3 s each here; the S3 test reads one sample file to keep its time down.
S3_SAMPLE = SAMPLES / "conversations-2026-11-26.parquet"
SAMPLE_ROWS = sum(pq.ParquetFile(p).metadata.num_rows for p in SAMPLES.glob("*.parquet"))


@pytest.fixture
def fast_store_lease(monkeypatch):
    monkeypatch.setattr(StoreLease, "settle_s", 0.2)


@pytest.fixture
def s3_server():
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps its buckets in process-wide state that outlives a server: without a reset, the objects an earlier
    # test wrote (tests/test_night_pruning.py also writes s3://verdicts/out) are still there for this one
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    for bucket in ("logs", "verdicts"):
        client.create_bucket(Bucket=bucket)
    client.upload_file(str(S3_SAMPLE), "logs", f"nightly/{S3_SAMPLE.name}")
    yield url, client
    server.stop()


@pytest.fixture
def gcs_server(monkeypatch):
    emulator = pytest.importorskip("gcp_storage_emulator.server")
    storage = pytest.importorskip("google.cloud.storage")
    server = emulator.create_server("127.0.0.1", 0, in_memory=True, default_bucket="logs")
    server.start()
    host, port = server._api._httpd.server_address[:2]
    url = f"http://{host}:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    client = storage.Client.create_anonymous_client()
    client.project = "test"
    client.create_bucket("verdicts")
    for path in sorted(SAMPLES.glob("*.parquet")):
        client.bucket("logs").blob(f"nightly/{path.name}").upload_from_filename(str(path))
    yield url
    server.stop()


def _store_rows(pattern: str) -> list[dict]:
    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    rows = []
    for path in paths:
        with FileSystems.open(path) as handle:
            rows += pq.read_table(io.BytesIO(handle.read())).to_pylist()
    return rows


def _read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def _run_twice_and_check(input_glob: str, output: str, store_args: list[str], rows: int = SAMPLE_ROWS) -> None:
    argv = ["--engine", "fake", "--input", input_glob, "--output", output, *store_args]
    first = run([*argv, "--run-id", "night-1"])
    manifest = _read_json(f"{output}/_runs/night-1.json")
    assert manifest["status"] == "succeeded", manifest["accounting_problems"]
    assert manifest["rows_read"] == rows == first.rows_read
    verdicts = _store_rows(f"{output}/verdicts/tenant=*/date=*/*.parquet")
    errors = _store_rows(f"{output}/errors/date=*/*.parquet")
    assert verdicts and len({v["resume_key"] for v in verdicts}) == len(verdicts)
    assert manifest["totals"]["verdicts_written"] == len(verdicts)
    assert manifest["totals"].get("units_dead_lettered", 0) + manifest["totals"].get("rows_dead_lettered", 0) == len(
        errors
    )
    assert not FileSystems.match([f"{output}/_staging/**"])[0].metadata_list  # every staged file was published

    run([*argv, "--run-id", "night-2"])  # same output: resumes, judges nothing twice
    again = _read_json(f"{output}/_runs/night-2.json")
    assert again["status"] == "succeeded", again["accounting_problems"]
    assert again["totals"].get("verdicts_written", 0) == 0
    assert again["totals"]["units_already_done"] == len(verdicts)
    assert len(_store_rows(f"{output}/verdicts/tenant=*/date=*/*.parquet")) == len(verdicts)
    assert not FileSystems.exists(f"{output}/_lease.json")  # released at the end of the run


def test_job_reads_and_writes_s3(s3_server, fast_store_lease):
    url, _ = s3_server
    store = ["--s3_endpoint_url", url, "--s3_region_name", "us-east-1"]
    store += ["--s3_access_key_id", "test", "--s3_secret_access_key", "test"]
    rows = pq.ParquetFile(S3_SAMPLE).metadata.num_rows
    _run_twice_and_check("s3://logs/nightly/*.parquet", "s3://verdicts/out", store, rows)


def test_job_reads_and_writes_gcs(gcs_server, fast_store_lease):
    _run_twice_and_check("gs://logs/nightly/*.parquet", "gs://verdicts/out", ["--project", "test"])
