"""Exit codes a scheduler can act on, through `run_batch.sh` as cron runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.job import exit_codes
from pipelines.job.resume_keys import OutputUnreadableError
from policies import PolicyError
from transforms.engines.protocol import EngineError
from transforms.io.read_logs import InputError

REPO = Path(__file__).resolve().parents[1]


def run_batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "run_batch.sh"), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InputError("pattern matched no files"), exit_codes.INPUT_NOT_FOUND),
        (PolicyError("tenants.yaml: bad"), exit_codes.CONFIG_INVALID),
        (exit_codes.AccountingError("rows read 3 != 2"), exit_codes.ACCOUNTING),
        (EngineError("could not start"), exit_codes.ENGINE),
        (RuntimeError("... EngineDeadError: core died [while running 'Judge']"), exit_codes.ENGINE),
        (ValueError("--batch-size and --flush-rows must be >= 1"), exit_codes.USAGE),
        (OutputUnreadableError("could not list out/verdicts/*"), exit_codes.OUTPUT_UNREADABLE),
        (RuntimeError("disk full"), exit_codes.FAILURE),
    ],
)
def test_exit_code_for_each_kind(exc, code):
    assert exit_codes.exit_code_for(exc) == code
    try:
        raise RuntimeError("wrapped by a runner") from exc
    except RuntimeError as wrapped:
        assert exit_codes.exit_code_for(wrapped) == code  # found along the cause chain


def test_run_batch_exit_codes(tmp_path):
    out = str(tmp_path / "out")
    assert run_batch("--output", out, "--engine", "fake", "--max-tokns", "3").returncode == exit_codes.USAGE
    assert run_batch("--output", out, "--engine", "fake", "--date", "2026-02-30").returncode == exit_codes.USAGE
    missing = run_batch("--output", out, "--engine", "fake", "--input", str(tmp_path / "none-*.parquet"))
    assert missing.returncode == exit_codes.INPUT_NOT_FOUND and "none-*" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\ndescription: d\ncategories: []\n")
    invalid = run_batch("--output", out, "--engine", "fake", "--policies", str(bad))
    assert invalid.returncode == exit_codes.CONFIG_INVALID and "bad.yaml" in invalid.stderr
    assert run_batch("--output", out, "--engine", "fake").returncode == exit_codes.OK
