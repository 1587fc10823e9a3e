"""Calibration: temperature fitting, ECE, thresholds, the file format, and the job deciding on calibrated P."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from pipelines.calibrate import fit, fit_temperature, main, threshold_for
from pipelines.metrics import expected_calibration_error
from pipelines.moderate import run
from transforms.calibration import Calibration, logit, sigmoid

REPO = Path(__file__).resolve().parents[1]


def _overconfident(n: int, temperature: float, seed: int = 0) -> tuple[list[float], list[int]]:
    """Labels drawn from a true probability q; the guard reports sigmoid(logit(q) * temperature)."""
    rng = random.Random(seed)
    p, y = [], []
    for _ in range(n):
        q = rng.uniform(0.02, 0.98)
        y.append(int(rng.random() < q))
        p.append(sigmoid(logit(q) * temperature))
    return p, y


def test_fitting_recovers_the_temperature_and_lowers_the_ece():
    p, y = _overconfident(3000, 3.0)
    t = fit_temperature(p, y)
    assert t == pytest.approx(3.0, rel=0.15)
    calibrated = [sigmoid(logit(x) / t) for x in p]
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, p) / 2


def test_thresholds_meet_their_targets():
    p, y = [0.1, 0.2, 0.6, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1]
    assert threshold_for(p, y, 1.0, "precision") == 0.7
    assert threshold_for(p, y, 1.0, "recall") == 0.7
    assert threshold_for(p, y, 2.0, "precision") is None


def test_per_tenant_fits_need_enough_labels_and_fall_back_to_global():
    p1, y1 = _overconfident(400, 3.0, seed=1)
    p2, y2 = _overconfident(10, 1.0, seed=2)
    points = pl.DataFrame({"tenant_id": ["a"] * 400 + ["b"] * 10, "p_unsafe": p1 + p2, "y": y1 + y2})
    calibration, report = fit(points, min_labels=30)
    assert (
        set(calibration.tenant_temperatures) == {"a"} and calibration.temperature("b") == calibration.global_temperature
    )
    assert report["tenants"]["a"]["ece_after"] < report["tenants"]["a"]["ece_before"]
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration and again.version == calibration.version
    with pytest.raises(ValueError, match="positive"):
        Calibration(0.0)


def test_the_job_decides_on_the_calibrated_probability(tmp_path):
    labelled = tmp_path / "labelled.parquet"
    p, y = _overconfident(200, 0.2)  # an under-confident guard: calibration sharpens it
    pl.DataFrame({"tenant_id": ["globex"] * 200, "p_unsafe": p,
                  "label": ["unsafe" if v else "safe" for v in y]}).write_parquet(labelled)  # fmt: skip
    target = tmp_path / "calibration.json"
    assert main(["--labelled", str(labelled), "--to", str(target), "--min-labels", "50"]) == 0
    calibration = Calibration.from_json(target.read_text())
    assert calibration.temperature("globex") < 0.5
    out = tmp_path / "out"
    argv = ["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out)]
    manifest = run([*argv, "--calibration", str(target)])
    rows = pl.read_parquet(out / "verdicts" / "**" / "*.parquet")
    assert set(rows["calibration_version"]) == {calibration.version}
    globex = rows.filter(pl.col("tenant_id") == "globex")
    expected = [calibration.apply("globex", p) for p in globex["p_unsafe"]]
    assert globex["p_calibrated"].to_list() == pytest.approx(expected)
    assert manifest.judge_settings["calibration_version"] == calibration.version
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": "isotonic"}))
    with pytest.raises(ValueError, match="not a calibration file"):
        run([*argv, "--output", str(tmp_path / "o2"), "--calibration", str(bad)])
