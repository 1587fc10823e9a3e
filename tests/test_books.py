"""The run's books come from what it publishes, and a re-executed bundle replaces what it published."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.job.books import read_books
from transforms.io.write_partitions import ERROR_SCHEMA, VERDICT_SCHEMA, WritePartitionsDoFn
from transforms.stores.ledger import BundleLedger, key_digest


def _bundle(out: Path, keys: list[str]) -> None:
    ledger = BundleLedger(str(out), "r1", "step")
    for key in keys:
        ledger.saw(key)
        ledger.count("units_made", "acme")
    ledger.publish()


def test_a_re_executed_bundle_replaces_its_ledger_record(tmp_path):
    _bundle(tmp_path, ["a", "b", "c"])
    _bundle(tmp_path, ["c", "a", "b"])  # the same elements again, in another order: a retried bundle
    _bundle(tmp_path, ["d"])
    assert len(list((tmp_path / "_ledger" / "r1").glob("*.json"))) == 2
    assert read_books(str(tmp_path), "r1") == {"units_made": {"acme": 4}}
    assert read_books(str(tmp_path), "other-run") == {}


def test_key_digest_is_order_independent_and_tells_sets_apart():
    assert key_digest(["x", "y"]) == key_digest(["y", "x"])
    assert key_digest(["x", "y"])[0] != key_digest(["x", "z"])[0]


def _verdict(key: str, verdict: str) -> dict:
    row = dict.fromkeys(VERDICT_SCHEMA.names)
    return row | {
        "tenant_id": "acme",
        "date": "2026-11-26",
        "verdict": verdict,
        "resume_key": key,
        "from_cache": False,
        "deduplicated": False,
    }


def test_published_files_carry_their_counts_and_a_republished_file_replaces_itself(tmp_path):
    rows = [_verdict(f"k{i}", "unsafe" if i % 2 else "safe") for i in range(5)]
    for _ in range(2):  # the bundle runs twice (a retry): same rows, same file
        writer = WritePartitionsDoFn(str(tmp_path), "r1", "verdicts", flush_rows=100)
        writer.start_bundle()
        for row in rows:
            list(writer.process(row))
        list(writer.finish_bundle())
    assert len(list((tmp_path / "verdicts").glob("*/*/part-r1-*.parquet"))) == 1
    books = read_books(str(tmp_path), "r1")
    assert books["verdicts_written"] == {"acme": 5}
    assert books["verdict_safe"] == {"acme": 3} and books["verdict_unsafe"] == {"acme": 2}


def _publish_bundle(out: Path, rows: list[dict], clock_step_s: float, monkeypatch) -> None:
    """Run one writer bundle over `rows`, the clock advancing `clock_step_s` per reading (a slow CPU batch)."""
    now = [1000.0]

    def clock() -> float:
        now[0] += clock_step_s
        return now[0]

    with monkeypatch.context() as patched:
        patched.setattr(time, "monotonic", clock)
        writer = WritePartitionsDoFn(str(out), "r1", "verdicts", flush_rows=3)
        writer.start_bundle()
        for row in rows:
            list(writer.process(row))
        list(writer.finish_bundle())


def test_a_re_executed_bundle_publishes_the_same_files_whatever_the_timing(tmp_path, monkeypatch):
    rows = [_verdict(f"k{i}", "safe") for i in range(7)]
    _publish_bundle(tmp_path, rows, 0.0, monkeypatch)
    first = sorted(p.name for p in (tmp_path / "verdicts").glob("*/*/*.parquet"))
    _publish_bundle(tmp_path, rows, 31.0, monkeypatch)  # the retry runs slower: more than a "flush period" per row
    files = sorted((tmp_path / "verdicts").glob("*/*/*.parquet"))
    assert [p.name for p in files] == first and len(first) == 3  # 3 + 3 + the bundle's last row
    keys = [k for p in files for k in pq.read_table(p, columns=["resume_key"]).column(0).to_pylist()]
    assert sorted(keys) == sorted(r["resume_key"] for r in rows)  # each row published once
    assert read_books(str(tmp_path), "r1")["verdicts_written"] == {"acme": 7}


def test_dead_letters_go_to_the_run_date_whenever_they_are_written(tmp_path):
    writer = WritePartitionsDoFn(str(tmp_path), "r1", "errors", run_date="2026-11-26")
    writer.start_bundle()
    row = dict.fromkeys(ERROR_SCHEMA.names) | {"error_kind": "bad", "tenant_id": "acme", "dead_letter_key": "d1"}
    list(writer.process(row))
    list(writer.finish_bundle())
    assert [p.parent.name for p in (tmp_path / "errors").glob("*/*.parquet")] == ["date=2026-11-26"]
