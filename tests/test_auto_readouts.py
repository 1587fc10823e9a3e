"""`benchmarks/auto_readouts.py`: the job's verdict against the guard's written answer in two `auto` runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from auto_readouts import agreement, main, verdict_figures  # noqa: E402


def _joined(verdicts: list[str | None], outcomes: list[str], raw: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "conversation_id": ["c0", "c1", "c2", "c3"],
            "unit": ["prompt"] * 4,
            "set": ["a", "a", "b", "b"],
            "label": ["unsafe", "safe", "unsafe", "safe"],
            "verdict": verdicts,
            "outcome": outcomes,
            "raw_output": raw,
        }
    )


def test_verdict_f1_counts_the_verdict_not_the_written_answer():
    joined = _joined(["unsafe", "safe", None, "safe"], ["unsafe", "unsafe", "unsafe", "unsafe"], ["x"] * 4)
    figures = verdict_figures(joined)
    assert (figures["outcome_unsafe"], figures["verdict_unsafe"]) == (4, 1)
    assert figures["verdict_f1"] == {"a": 1.0, "b": 0.0}  # set b: its unsafe item has no verdict (missed)
    assert figures["verdict_f1_mean"] == pytest.approx(0.5)


def test_agreement_joins_on_the_unit(tmp_path):
    first = _joined(["unsafe"] * 4, ["unsafe", "safe", "safe", "safe"], ["p", "q", "r", "s"])
    second = _joined(["safe"] * 4, ["unsafe", "unsafe", "safe", "safe"], ["p", "q", "r", "t"]).reverse()
    assert agreement(first, second) == {"units": 4, "same_raw_output": 3, "same_outcome": 3}
    for name, joined in (("one", first), ("two", second)):
        (tmp_path / name).mkdir()
        joined.write_parquet(tmp_path / name / "joined.parquet")
    out = tmp_path / "f.json"
    assert main([f"head={tmp_path / 'one'}", f"lora={tmp_path / 'two'}", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"head", "lora", "agreement"} and figures["lora"]["verdict_unsafe"] == 0
    with pytest.raises(SystemExit):
        main([str(tmp_path / "one"), f"lora={tmp_path / 'two'}"])
    with pytest.raises(SystemExit):  # one name twice
        main([f"head={tmp_path / 'one'}", f"head={tmp_path / 'two'}"])
    with pytest.raises(SystemExit):  # not an evaluation folder
        main([f"head={tmp_path / 'one'}", f"lora={tmp_path}"])
