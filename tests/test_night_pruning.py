"""A night reads its day, not the archive: pruning by Hive path partitions and footer statistics (locally and on
an S3 server), resume lookups in the covered days only, late and changed files through the consumed-files record."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.job.moderate import run
from pipelines.job.resume_keys import OutputUnreadableError
from scripts.synthetic_archive import archive_days, day_table, write_flat_archive, write_hive_archive
from tests.test_remote_storage import fast_store_lease, s3_server  # noqa: F401  (fixtures)
from transforms.io.date_window import DateWindow
from transforms.io.input_files import ListedFile
from transforms.io.input_plan import consecutive_runs, plan_input
from transforms.io.partition_days import partition_day, row_group_days

DAYS = archive_days(4)
ROWS = 10  # per day
NIGHT = DAYS[2]


def _manifest(out: Path, run_id: str) -> dict:
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


def _night(inputs: str, out: Path, run_id: str, *extra: str) -> dict:
    run(["--engine", "fake", "--input", inputs, "--output", str(out), "--run-id", run_id, *extra])
    manifest = _manifest(out, run_id)
    assert manifest["status"] == "succeeded", manifest["accounting_problems"]
    return manifest


def _listed(paths) -> list[ListedFile]:
    return [ListedFile(str(p), p.stat().st_size, p.stat().st_mtime) for p in sorted(paths)]


@pytest.mark.parametrize(
    ("path", "day"),
    [
        ("logs/date=2026-11-26/part-0.parquet", "2026-11-26"),
        ("s3://b/logs/dt=2026-11-26/x.parquet", "2026-11-26"),
        ("gs://b/day=2026-11-26/x.parquet", "2026-11-26"),
        ("logs/year=2026/month=1/day=5/x.parquet", "2026-01-05"),
        ("logs/DATE=2026-11-26/x.parquet", "2026-11-26"),
        ("logs/date=2026-02-30/x.parquet", None),  # not a calendar day: not a partition
        ("logs/2026-11-26/x.parquet", None),
        ("logs/date=2026-11-26.parquet", None),  # the file's own name is no folder
    ],
)
def test_partition_day(path: str, day: str | None) -> None:
    assert partition_day(path) == day


def test_consecutive_runs() -> None:
    assert consecutive_runs([0, 1, 2, 5, 6, 9]) == [(0, 3), (5, 7), (9, 10)]
    assert consecutive_runs([]) == []


def test_partitioned_files_outside_the_window_are_never_opened(tmp_path: Path) -> None:
    files = write_hive_archive(tmp_path / "logs", DAYS, ROWS)
    opened: list[str] = []

    def open_file(path: str):
        opened.append(path)
        return open(path, "rb")

    plan = plan_input(_listed(files), DateWindow.of(NIGHT), open_file=open_file)
    assert opened == [str(files[2])] and [s.path for s in plan.splits] == opened
    assert plan.counts.files_pruned_by_partition == 3 and plan.counts.rows_read == ROWS


def test_flat_file_row_groups_outside_the_window_are_skipped(tmp_path: Path) -> None:
    path = write_flat_archive(tmp_path / "flat.parquet", DAYS, ROWS)
    assert row_group_days(pq.read_metadata(path), "created_at")[2] == (NIGHT, NIGHT)
    plan = plan_input(_listed([path]), DateWindow(DAYS[1], DAYS[2]))
    assert [s.row_groups for s in plan.splits] == [(1, 3)]
    assert (plan.counts.row_groups, plan.counts.row_groups_skipped) == (4, 2)
    assert (plan.counts.rows_read, plan.counts.rows_not_read) == (2 * ROWS, 2 * ROWS)
    everything = plan_input(_listed([path]), None)
    assert [s.row_groups for s in everything.splits] == [None] and everything.counts.rows_read == 4 * ROWS


def test_a_night_over_a_hive_archive_opens_its_day_only(tmp_path: Path) -> None:
    write_hive_archive(tmp_path / "logs", DAYS, ROWS)
    manifest = _night(str(tmp_path / "logs" / "date=*" / "*.parquet"), tmp_path / "out", "night", "--date", NIGHT)
    counts = manifest["input_counts"]
    assert counts["files_listed"] == 4 and counts["files_pruned_by_partition"] == 3 and counts["files_opened"] == 1
    assert manifest["rows_read"] == counts["rows_read"] == ROWS
    assert manifest["totals"]["rows_to_units"] == ROWS and manifest["totals"].get("rows_skipped", 0) == 0
    assert {p.name for p in (tmp_path / "out" / "verdicts").glob("tenant=*/date=*")} == {f"date={NIGHT}"}


def test_a_night_over_a_flat_archive_reads_its_row_group_only(tmp_path: Path) -> None:
    write_flat_archive(tmp_path / "flat.parquet", DAYS, ROWS)
    for dedup in ("worker", "shuffle"):
        out = tmp_path / f"out-{dedup}"
        manifest = _night(str(tmp_path / "flat.parquet"), out, "night", "--date", NIGHT, "--dedup", dedup)
        counts = manifest["input_counts"]
        assert counts["files_opened"] == 1 and counts["row_groups_skipped"] == 3
        assert manifest["rows_read"] == ROWS and counts["rows_not_read"] == 3 * ROWS
        assert manifest["totals"]["rows_to_units"] == ROWS


def test_resume_looks_only_in_the_covered_days_partitions(tmp_path: Path) -> None:
    write_hive_archive(tmp_path / "logs", DAYS, ROWS)
    logs, out = str(tmp_path / "logs" / "date=*" / "*.parquet"), tmp_path / "out"
    # an unreadable verdict file of another night: a lookup that scanned every night would fail on it
    other = out / "verdicts" / "tenant=globex" / f"date={DAYS[0]}"
    other.mkdir(parents=True)
    (other / "part-old-0.parquet").write_bytes(b"not parquet")
    assert _night(logs, out, "night", "--date", NIGHT)["totals"]["verdicts_written"] > 0
    with pytest.raises(OutputUnreadableError, match=f"date={DAYS[0]}"):
        run(["--engine", "fake", "--input", logs, "--output", str(out), "--run-id", "all-days"])


def test_rerun_of_a_finished_day_opens_no_file_then_late_and_changed_files(tmp_path: Path) -> None:
    root, out = tmp_path / "logs", tmp_path / "out"
    write_hive_archive(root, DAYS, ROWS)
    logs = str(root / "date=*" / "*.parquet")
    first = _night(logs, out, "n1", "--date", NIGHT)
    units = first["totals"]["units_made"]

    again = _night(logs, out, "n2", "--date", NIGHT)
    assert again["input_counts"]["files_opened"] == 0 and again["input_counts"]["files_already_consumed"] == 1
    assert again["rows_read"] == 0 and again["totals"].get("units_made", 0) == 0

    late = root / f"date={NIGHT}" / "part-late.parquet"
    pq.write_table(day_table(NIGHT, 3, tag="late"), late)
    with_late = _night(logs, out, "n3", "--date", NIGHT)
    assert with_late["input_counts"]["files_opened"] == 1 and with_late["rows_read"] == 3
    assert with_late["totals"]["units_made"] == with_late["totals"]["verdicts_written"] == 3 * units // ROWS

    changed = root / f"date={NIGHT}" / "part-0.parquet"  # re-exported with two more conversations
    pq.write_table(day_table(NIGHT, ROWS + 2), changed)
    after_change = _night(logs, out, "n4", "--date", NIGHT)
    totals = after_change["totals"]
    assert after_change["input_counts"]["files_opened"] == 1 and after_change["rows_read"] == ROWS + 2
    assert totals["units_already_done"] == units and totals["verdicts_written"] == 2 * units // ROWS

    reread = _night(logs, out, "n5", "--date", NIGHT, "--reread-consumed")
    assert reread["input_counts"]["files_opened"] == 2 and reread["totals"].get("verdicts_written", 0) == 0


def test_new_work_reads_a_consumed_day_again(tmp_path: Path) -> None:
    root, out = tmp_path / "logs", tmp_path / "out"
    write_hive_archive(root, DAYS[:1], ROWS)
    logs = str(root / "date=*" / "*.parquet")
    _night(logs, out, "n1", "--date", DAYS[0])
    other_template = _night(logs, out, "n2", "--date", DAYS[0], "--template", "rsafe-categories")
    assert other_template["input_counts"]["files_opened"] == 1 and other_template["totals"]["verdicts_written"] > 0


def test_a_night_on_s3_opens_its_day_only(s3_server, fast_store_lease, tmp_path: Path) -> None:  # noqa: F811
    url, client = s3_server
    for path in write_hive_archive(tmp_path / "logs", DAYS, ROWS):
        client.upload_file(str(path), "logs", f"archive/{path.parent.name}/{path.name}")
    store = ["--s3_endpoint_url", url, "--s3_region_name", "us-east-1"]
    store += ["--s3_access_key_id", "test", "--s3_secret_access_key", "test"]
    argv = ["--engine", "fake", "--input", "s3://logs/archive/date=*/*.parquet", "--output", "s3://verdicts/out"]
    first = run([*argv, *store, "--run-id", "s3-night", "--date", NIGHT])
    assert first.status == "succeeded" and first.rows_read == ROWS
    assert first.input_counts["files_listed"] == 4 and first.input_counts["files_opened"] == 1
    again = run([*argv, *store, "--run-id", "s3-again", "--date", NIGHT])
    assert again.status == "succeeded" and again.input_counts["files_opened"] == 0 and again.rows_read == 0
