"""The run's books come from what it publishes, and a re-executed bundle replaces what it published."""

from __future__ import annotations

from pathlib import Path

from pipelines.books import read_books
from transforms.ledger import BundleLedger, key_digest
from transforms.write_partitions import VERDICT_SCHEMA, WritePartitionsDoFn


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
