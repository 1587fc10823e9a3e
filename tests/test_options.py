"""Options are validated before anything runs: typos, bad values, missing inputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.job.moderate import print_help, run
from pipelines.job.usage import reject_unknown_args
from transforms.io.read_logs import InputError


def test_misspelt_option_is_an_error_naming_it():
    with pytest.raises(ValueError, match="--max-tokns"):
        reject_unknown_args(["--input", "x.parquet", "--max-tokns", "5"])


def test_beam_runner_options_are_accepted():
    from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions

    argv = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--temp_location", "gs://b/t"]
    assert reject_unknown_args(argv) is None
    options = PipelineOptions(argv)
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(GoogleCloudOptions).temp_location == "gs://b/t"
    with pytest.raises(ValueError, match="--direct_num_workerz"):
        reject_unknown_args([*argv, "--direct_num_workerz", "3"])


def test_pattern_matching_nothing_fails_before_running(tmp_path):
    with pytest.raises(InputError, match="nothing-here"):
        run(["--input", str(tmp_path / "nothing-here-*.parquet"), "--output", str(tmp_path), "--engine", "fake"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--review-band", "0.8,0.2"], "review_band"),
        (["--threshold", "1.5"], "threshold"),
        (["--batch-size", "0"], "batch-size"),
    ],
)
def test_bad_values_fail_with_the_field_named(tmp_path, argv, message):
    base = ["--input", "samples/logs/*.parquet", "--output", str(tmp_path), "--engine", "fake"]
    with pytest.raises(ValueError, match=message):
        run(base + argv)


def test_help_lists_the_jobs_options():
    done = subprocess.run([sys.executable, "-m", "pipelines.moderate", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ("--verdict-mode", "--review-band", "--reasoning-budget", "--policies", "--date"):
        assert option in done.stdout


def test_manifest_records_the_decision_settings(tmp_path):
    argv = ["--input", "samples/logs/*.parquet", "--output", str(tmp_path), "--engine", "fake"]
    manifest = run([*argv, "--review-band", "0.35,0.65", "--threshold", "0.4"])
    assert manifest.judge_settings["review_band"] == (0.35, 0.65)
    assert manifest.judge_settings["threshold"] == 0.4 and manifest.judge_settings["verdict_mode"] == "cascade"


@pytest.mark.parametrize("value", ["2026-13-40", "2026-02-30", "27/11/2026", "tomorrow"])
def test_a_bad_date_fails_before_anything_is_written(tmp_path, value):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"^argument --date: "):  # a usage error in one line (exit code 2)
        run(["--input", "samples/logs/*.parquet", "--output", str(out), "--engine", "fake", "--date", value])
    assert not out.exists()


def test_date_accepts_today_and_yesterday_in_utc():
    import argparse
    import datetime as dt

    from pipelines.job.options import _date

    assert _date("yesterday", today=dt.date(2026, 3, 1)) == "2026-02-28"
    assert _date("today", today=dt.date(2026, 3, 1)) == "2026-03-01"
    assert _date("2024-02-29") == "2024-02-29"
    with pytest.raises(argparse.ArgumentTypeError, match="not a calendar day"):
        _date("2025-02-29")


def test_input_options_parse():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.job.options import ModerationOptions

    argv = ["--strict-input", "--column-map", "conversation_id=id", "--column_map", "tenant_id=org"]
    assert reject_unknown_args(argv) is None
    options = PipelineOptions(argv).view_as(ModerationOptions)
    assert options.strict_input is True
    assert options.column_map == ["conversation_id=id", "tenant_id=org"]
    assert PipelineOptions([]).view_as(ModerationOptions).strict_input is False


def test_a_malformed_column_map_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    argv = ["--input", str(tmp_path), "--output", str(out), "--engine", "fake", "--column-map", "tenant=org"]
    with pytest.raises(ValueError, match="'tenant' is not one of"):
        run(argv)
    assert not out.exists()


def test_a_usage_error_is_one_line_on_the_terminal_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    argv = [str(repo / "run_batch.sh"), "--output", str(out), "--engine", "fake", "--date", "2026-02-30"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "usage error (exit 2): argument --date: not a calendar day: '2026-02-30' (day is out of range for month)"
    ]
    assert not out.exists()  # no OUT/_runs/<run_id>.log either


def test_help_lists_each_option_once_and_the_trained_guard_as_the_model_default(capsys):
    print_help()
    text = capsys.readouterr().out
    assert re.search(r"^  --input INPUT ", text, re.MULTILINE) and "--input INPUT, --input INPUT" not in text
    assert "--run-id RUN_ID, --run_id RUN_ID" in text  # a two-word option keeps its Beam-style spelling
    model_help = " ".join(text.rsplit("--model MODEL", 1)[1].split("--engine", 1)[0].split())
    assert "default: the embedded guard" in model_help and "decision head" in model_help


def test_importing_the_job_prints_no_beam_bigquery_notice():
    done = subprocess.run([sys.executable, "-c", "import pipelines.job.moderate"], capture_output=True, text=True)
    assert done.returncode == 0 and "apitools" not in done.stderr, done.stderr
