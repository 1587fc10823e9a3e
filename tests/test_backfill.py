"""Backfills day by day: one manifest per day, a failed day fails only itself (exit 9), resumed by rerunning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.job import exit_codes
from pipelines.job.backfill import day_argv
from pipelines.job.exit_codes import BackfillError
from pipelines.job.moderate import run
from scripts.synthetic_archive import archive_days, write_hive_archive

DAYS = archive_days(3)
ROWS = 6


def test_day_argv_replaces_the_window_and_run_id() -> None:
    argv = ["--input", "x", "--since", DAYS[0], "--until=" + DAYS[2], "--run_id", "b", "--day-by-day", "--seed", "1"]
    assert day_argv(argv, DAYS[1], f"b-{DAYS[1]}") == [
        "--input",
        "x",
        "--seed",
        "1",
        "--date",
        DAYS[1],
        "--run-id",
        f"b-{DAYS[1]}",
    ]


def test_day_by_day_needs_a_bounded_range(tmp_path: Path) -> None:
    write_hive_archive(tmp_path / "logs", DAYS, ROWS)
    argv = ["--engine", "fake", "--input", str(tmp_path / "logs/date=*/*.parquet"), "--output", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="--since and --until"):
        run([*argv, "--since", DAYS[0], "--day-by-day"])


def test_a_backfill_resumes_after_one_failing_day(tmp_path: Path) -> None:
    write_hive_archive(tmp_path / "logs", DAYS, ROWS)
    out = tmp_path / "out"
    argv = ["--engine", "fake", "--input", str(tmp_path / "logs/date=*/*.parquet"), "--output", str(out)]
    argv += ["--since", DAYS[0], "--until", DAYS[2], "--day-by-day", "--run-id", "fill"]
    # the middle day's published verdicts are unreadable: that day fails (exit 8), the others do not
    broken = out / "verdicts" / "tenant=globex" / f"date={DAYS[1]}" / "part-old-0.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not parquet")
    with pytest.raises(BackfillError) as caught:
        run(argv)
    assert exit_codes.exit_code_for(caught.value) == exit_codes.PARTIAL == 9
    record = json.loads((out / "_backfills" / "fill.json").read_text())
    assert [d["run_id"] for d in record["days"]] == [f"fill-{d}" for d in DAYS]
    assert [(d["day"], d["status"], d["exit_code"]) for d in record["days"]] == [
        (DAYS[0], "succeeded", 0),
        (DAYS[1], "failed", exit_codes.OUTPUT_UNREADABLE),
        (DAYS[2], "succeeded", 0),
    ]
    for day in (DAYS[0], DAYS[2]):  # one manifest per day
        manifest = json.loads((out / "_runs" / f"fill-{day}.json").read_text())
        assert manifest["status"] == "succeeded" and manifest["rows_read"] == ROWS

    broken.unlink()
    resumed = run(argv)  # the same command: the finished days open no file, the failed day is judged
    assert [d.status for d in resumed.days] == ["succeeded"] * 3
    opened = [d.manifest.input_counts["files_opened"] for d in resumed.days]
    assert opened == [0, 1, 0] and [d.manifest.rows_read for d in resumed.days] == [0, ROWS, 0]
    assert resumed.per_tenant and {p.name for p in (out / "verdicts").glob("tenant=*/date=*")} == {
        f"date={d}" for d in DAYS
    }
    # a day that wrote a manifest reruns under a new id (a run's books are its id's); the failed day wrote none
    assert [d.run_id for d in resumed.days] == [f"fill-{DAYS[0]}-r2", f"fill-{DAYS[1]}", f"fill-{DAYS[2]}-r2"]
