"""`benchmarks/trace_overturn.py`: whether a head cascade's traces would do better than the head where they
disagree, from a benchmark run's joined rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.evaluation import evaluate
from transforms.engines.fake_engine import FakeEngineSpec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from trace_overturn import main, overturn_figures  # noqa: E402


def test_figures_count_disagreements_and_who_was_right():
    joined = pl.DataFrame(
        {
            "set": ["a"] * 5,
            "label": ["unsafe", "unsafe", "safe", "safe", "unsafe"],
            "p_unsafe": [0.9, 0.7, 0.8, 0.2, 0.3],
            "trace_p_unsafe": [0.8, 0.1, 0.2, None, None],  # unit 2: the trace disagrees and is wrong; 3: right
        }
    )
    figures = overturn_figures(joined)
    assert (figures["units"], figures["traced"], figures["disagreements"]) == (5, 3, 2)
    assert figures["disagreements_trace_right"] == 1
    assert figures["traced_accuracy_head"] == pytest.approx(2 / 3)
    assert figures["traced_accuracy_trace"] == pytest.approx(2 / 3)
    # head: TP 2 (0, 1), FP 1 (2), FN 1 (4) -> F1 2/3; overturned: TP 1, FP 0, FN 2 -> F1 1/2
    assert figures["f1_head_decides"] == pytest.approx(2 / 3)
    assert figures["f1_trace_overturns"] == pytest.approx(1 / 2)


@pytest.mark.skipif(not (REPO.parent / "shared/data/benchmarks").is_dir(), reason="needs ../shared/data")
def test_on_a_fake_head_cascade_evaluation(tmp_path):
    out = tmp_path / "eval"
    argv = ["--sets", "toxicchat,aegis", "--limit", "6", "--out", str(out), "--engine", "fake", "--verdict-mode",
            "cascade", "--cascade-band", "0.0,1.0"]  # fmt: skip
    evaluate.evaluate(argv, engine_spec=FakeEngineSpec(head_version="h"))
    assert pl.read_parquet(out / "joined.parquet")["trace_p_unsafe"].is_not_null().any()
    assert main([str(out), "--out", str(tmp_path / "f.json")]) == 0
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures["units"] == 12 and figures["sets"] == ["aegis", "toxicchat"]
    with pytest.raises(SystemExit):  # a run without traces is refused, not reported as zeros
        evaluate.evaluate([*argv[:8], "--verdict-mode", "score"], engine_spec=FakeEngineSpec(head_version="h"))
        main([str(out)])
