"""The nightly console: the job's own lines on the terminal, everything in the run's log file."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from pathlib import Path

import polars as pl
import pytest

from pipelines.job.console import TerminalHandler, _JobLinesOnly, tenant_table
from transforms.judging.judge_dofn import progress_heartbeat

REPO = Path(__file__).resolve().parents[1]


def test_run_batch_terminal_gets_the_jobs_lines_and_the_log_file_the_rest(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [str(REPO / "run_batch.sh"), "--engine", "fake", "--output", str(out), "--run-id", "quiet",
         "--fake-seconds-per-call", "0.2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = (done.stdout + done.stderr).splitlines()
    assert len(terminal) <= 30, terminal
    assert f"full log in {out}/_runs/quiet.log" in terminal[0]
    assert any("succeeded" in line for line in terminal)
    assert any(line.split()[-8:] and "acme-kids" in line for line in terminal)  # the per-tenant table
    assert not any("apitools" in line or "WARNING apache_beam" in line for line in terminal)
    log = (out / "_runs" / "quiet.log").read_text()
    assert "judged" in log and len(log.splitlines()) >= len(terminal)
    manifest = json.loads((out / "_runs" / "quiet.json").read_text())
    assert manifest["status"] == "succeeded"
    # the tokens column: prompt + generated tokens of the units this run judged (reused ones cost none)
    header = next(line.split() for line in terminal if {"tenant", "rows", "units"} <= set(line.split()))
    assert header[-3:] == ["tokens", "engine", "s"]
    verdicts = pl.scan_parquet(f"{out}/verdicts/**/*.parquet", hive_partitioning=True).collect()
    fresh = verdicts.filter(~pl.col("deduplicated") & ~pl.col("from_cache") & (pl.col("tenant") == "acme-kids"))
    row = next(line for line in terminal if " acme-kids " in f" {line} ")
    assert int(row.split()[-2]) == fresh["prompt_tokens"].sum() + fresh["completion_tokens"].sum() > 0
    # engine seconds per tenant: booked per bundle in the ledger, shared by tokens; they add up to the run's
    engine_ms = manifest["per_tenant"]["acme-kids"]["engine_ms"]
    assert engine_ms > 0
    assert float(row.split()[-1]) == pytest.approx(engine_ms / 1000, abs=0.06)
    total_ms = sum(t.get("engine_ms", 0) for t in manifest["per_tenant"].values())
    assert manifest["engine_seconds"] == pytest.approx(total_ms / 1000) and "engine_ms" not in manifest["totals"]


def test_verbose_keeps_everything_on_the_terminal(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [str(REPO / "run_batch.sh"), "--engine", "fake", "--output", str(out), "--run-id", "loud", "--verbose"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "INFO transforms.judging.judge_dofn: judged" in done.stderr


def test_the_console_filter_keeps_job_lines_and_errors_only():
    keep = _JobLinesOnly()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert keep.filter(record("rsafe_batch", logging.INFO)) and keep.filter(
        record("transforms.prompts.units", logging.WARNING)
    )
    assert not keep.filter(record("vllm.engine", logging.WARNING)) and not keep.filter(record("rsafe_batch", 10))
    assert keep.filter(record("apache_beam.runners", logging.ERROR))


def test_progress_heartbeat_logs_while_a_batch_runs(caplog):
    import time

    with caplog.at_level(logging.INFO, logger="transforms.judging.judge_dofn"), progress_heartbeat(8, 16, every_s=0.05):
        time.sleep(0.3)
    beats = [r.getMessage() for r in caplog.records if "judging a batch of 8" in r.getMessage()]
    assert len(beats) >= 3 and "16 done before it" in beats[0]


def test_tenant_table_sums_each_tenants_counts():
    lines = tenant_table({"a": {"rows_to_units": 3, "rows_dead_lettered": 1, "units_made": 4, "verdict_safe": 3,
                                "verdict_unsafe": 1}})  # fmt: skip
    assert lines[0].split()[:3] == ["tenant", "rows", "units"]
    assert lines[1].split()[:6] == ["a", "4", "4", "3", "1", "0"]


def test_progress_estimates_the_units_planned_and_the_time_left(monkeypatch):
    from transforms.stores import progress as module

    clock = iter([100.0, 110.0, 110.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    tally = module.Progress()
    tally.start(rows_total=100)  # t = 100
    tally.saw(rows=50, units=60)
    tally.judged(30)
    assert tally.planned() == (120, False)  # half the rows made 60 units: ~120 planned
    assert tally.eta_seconds() == 30.0  # 30 judged in 10 s, 90 to go
    assert tally.describe() == "30/~120 units, ETA 0m30s"
    tally.saw(rows=50, units=50)
    assert tally.planned() == (110, True)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_status_line_with_a_bar_on_a_tty_and_stays_lines_under_cron():
    from transforms.stores.progress import PROGRESS

    outputs = []
    for stream in (_Tty(), io.StringIO()):
        handler = TerminalHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger(f"rsafe_batch.test_console.{len(outputs)}")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        PROGRESS.start(rows_total=10)
        PROGRESS.saw(rows=10, units=8)
        PROGRESS.judged(2)
        logger.info("judging a batch", extra={"progress": True})
        PROGRESS.judged(4)
        logger.info("judged 6 unit(s)", extra={"progress": True})
        logger.info("run succeeded")
        outputs.append(stream.getvalue())
    tty, cron = outputs
    assert tty == (
        "\r[#####---------------] judging a batch\x1b[K\r[###############-----] judged 6 unit(s)\x1b[K\nrun succeeded\n"
    )
    assert cron == "judging a batch\njudged 6 unit(s)\nrun succeeded\n"
