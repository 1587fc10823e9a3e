"""`benchmarks/archive_nights.py --smoke` runs and writes the figures it promises (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_archive_nights_smoke(tmp_path: Path) -> None:
    out = tmp_path / "archive.json"
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "archive_nights.py"), "--smoke", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [n["archive"] for n in result["nights"]] == ["hive 2 days", "hive 6 days", "flat 6 days"]
    for night in result["nights"]:
        assert night["files_opened"] == 1 and night["rows_read"] == 20 and night["verdicts"] > 0
        assert night["rerun_files_opened"] == 0
    assert result["nights"][2]["row_groups_skipped"] == 5
    assert {"hive_ratio_met", "flat_ratio_met", "hive_same_rows_met", "rerun_opens_nothing_met"} <= result.keys()
