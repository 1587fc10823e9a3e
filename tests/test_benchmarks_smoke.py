"""Smoke runs of the benchmark scripts (`benchmarks/*.py --smoke`): they run and write the JSON they promise.

No timing is asserted: the figures live in BENCHMARKS.md. Only one script starts the real engine here (the cheapest,
`overhead_vs_raw`), under the `real_engine` marker; the others run on the fake engine or only parse their options.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "plumbing_scale",
    "overhead_vs_raw",
    "prefix_reuse",
    "dedup",
    "engine_settings",
    "guard_serving",
    "dask_plumbing",
)


def run_script(name: str, *args: str, out: Path, timeout: int) -> dict:
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / f"{name}.py"), *args, "--out", str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    # vLLM logs to stdout too: the figures are the Markdown table lines among them.
    assert any(line.startswith("|") for line in done.stdout.splitlines()), done.stdout[-2000:]
    return json.loads(out.read_text())


def assert_common_keys(result: dict, benchmark: str) -> None:
    assert result["benchmark"] == benchmark
    assert {"date", "machine", "load_start", "command", "args"} <= result.keys()
    assert result["machine"]["cpus"] >= 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_script_parses_its_options(name):
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / f"{name}.py"), "--help"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--smoke" in done.stdout and "--out" in done.stdout


def test_plumbing_scale_smoke(tmp_path):
    result = run_script("plumbing_scale", "--smoke", out=tmp_path / "plumbing.json", timeout=300)
    assert_common_keys(result, "plumbing_scale")
    assert [r["rows"] for r in result["runs"]] == [300, 1200]
    for run in result["runs"]:
        assert {"rows_read", "units", "verdicts", "wall_s", "cpu_s", "rows_per_s", "peak_rss_mb"} <= run.keys()
        assert run["rows_read"] == run["rows"] and run["verdicts"] > 0
    assert {"rows_per_s", "rows_per_s_target", "rows_per_s_met", "memory_drift", "memory_flat_met"} <= result.keys()


def test_dask_plumbing_smoke(tmp_path):
    result = run_script("dask_plumbing", "--smoke", out=tmp_path / "dask.json", timeout=300)
    assert_common_keys(result, "dask_plumbing")
    assert {r["runner"] for r in result["runs"]} == {"in-process", "dask-1", "dask-2"}


def test_dedup_smoke_on_the_fake_engine(tmp_path):
    result = run_script("dedup", "--smoke", "--engine", "fake", "--n", "40", out=tmp_path / "dedup.json", timeout=300)
    assert_common_keys(result, "dedup")
    assert set(result["runs"]) == {"unique", "duplicates", "cache-fill", "cache-hit"}
    assert result["runs"]["unique"]["units_deduplicated"] == 0
    assert result["units_deduplicated"] > 0 and result["duplicates_identical"]
    assert result["units_from_cache"] == result["runs"]["cache-hit"]["units"]
    assert result["cache_hit_verdicts_match_judged"]
    assert {"time_ratio_unique_over_duplicates", "target_ratio", "target_met"} <= result.keys()


@pytest.mark.real_engine
def test_overhead_vs_raw_smoke_on_the_real_engine(tmp_path):
    result = run_script("overhead_vs_raw", "--smoke", out=tmp_path / "overhead.json", timeout=900)
    assert_common_keys(result, "overhead_vs_raw")
    expected = {"engine_start_s", "raw_s", "raw_scored_s", "pipeline_s", "ratio_excl_start", "ratio_incl_start",
                "ratio_vs_scored_excl_start", "cpu_ratio", "target_met"}  # fmt: skip
    assert expected <= result.keys()
    assert result["verdicts_written"] == result["units"] > 0
