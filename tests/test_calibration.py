"""Calibration: temperature fitting, ECE, thresholds, the file format, and the job deciding on calibrated P."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import polars as pl
import pytest

from pipelines.evaluation.calibrate import fit, fit_temperature, main, threshold_for
from pipelines.evaluation.scores import expected_calibration_error
from pipelines.job.moderate import run
from transforms.judging.calibration import Calibration, LogitMap, logit, sigmoid

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
    assert set(calibration.tenant_maps) == {"a"} and calibration.map_for("b") == calibration.global_map
    assert report["fits"]["a"]["held_out_ece_after"] < report["fits"]["a"]["held_out_ece_before"]
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration and again.version == calibration.version
    with pytest.raises(ValueError, match="positive"):
        LogitMap.temperature(0.0)
    with pytest.raises(ValueError, match="positive"):
        LogitMap(-1.0, 0.0, "platt")  # a negative slope would turn the guard's ranking upside down


def test_the_job_decides_on_the_calibrated_probability(tmp_path):
    labelled = tmp_path / "labelled.parquet"
    p, y = _overconfident(200, 0.2)  # an under-confident guard: calibration sharpens it
    pl.DataFrame({"tenant_id": ["globex"] * 200, "p_unsafe": p,
                  "label": ["unsafe" if v else "safe" for v in y]}).write_parquet(labelled)  # fmt: skip
    target = tmp_path / "calibration.json"
    assert main(["--labelled", str(labelled), "--to", str(target), "--min-labels", "50"]) == 0
    calibration = Calibration.from_json(target.read_text())
    assert calibration.map_for("globex").slope > 2  # sharper: a temperature below 0.5, or Platt's slope
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


def _labelled(tmp_path: Path, p: list[float], y: list[int], tenant: str = "globex") -> Path:
    path = tmp_path / "labelled.parquet"
    pl.DataFrame({"tenant_id": [tenant] * len(p), "p_unsafe": p,
                  "label": ["unsafe" if v else "safe" for v in y]}).write_parquet(path)  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("y", "message"),
    [
        ([1] * 6 + [0] * 6, r"12 label\(s\), fewer than --min-labels 30: too few to fit a calibration"),
        ([1] * 40, r"all 40 labels are 'unsafe': a calibration needs both safe and unsafe labels"),
    ],
)
def test_too_few_or_one_sided_labels_are_refused_and_nothing_is_written(tmp_path, capsys, y, message):
    p = [0.6 + 0.3 * (i % 2) for i in range(len(y))]
    target = tmp_path / "calibration.json"
    assert main(["--labelled", str(_labelled(tmp_path, p, y)), "--to", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err) and not target.exists()


def test_platt_moves_the_decision_point_where_a_temperature_cannot():
    """The guard over-calls unsafe: the true probability is sigmoid(logit(p) - 2). Platt's intercept moves the
    0.5 point; a temperature maps 0.5 to 0.5 whatever T. Platt wins on held-out log loss."""
    rng = random.Random(3)
    p = [rng.uniform(0.02, 0.98) for _ in range(2000)]
    y = [int(rng.random() < sigmoid(logit(x) - 2)) for x in p]
    calibration, report = fit(pl.DataFrame({"tenant_id": ["t"] * 2000, "p_unsafe": p, "y": y}), min_labels=30)
    fitted = report["fits"]["*"]
    assert fitted["method"] == "platt"
    assert fitted["held_out_log_loss"]["platt"] < fitted["held_out_log_loss"]["temperature"]
    assert fitted["held_out_ece_after"] < fitted["held_out_ece_before"] / 2
    assert calibration.apply("t", 0.5) == pytest.approx(sigmoid(-2), abs=0.05)  # the 0.5 point moved
    assert LogitMap.temperature(3.0).apply(0.5) == pytest.approx(0.5)


def test_labels_no_map_can_fit_leave_p_as_it_is(tmp_path, capsys):
    """Labels that contradict the guard's ranking: the temperature runs to its search bound (left out), Platt's
    slope would be negative (left out), and the raw P is kept: calibration does not make things worse."""
    rng = random.Random(5)
    p = [rng.uniform(0.02, 0.98) for _ in range(300)]
    y = [int(rng.random() < 1 - x) for x in p]
    assert fit_temperature(p, y) == pytest.approx(50.0, rel=0.01)  # the bound: what the 49.99 was
    target = tmp_path / "calibration.json"
    assert main(["--labelled", str(_labelled(tmp_path, p, y)), "--to", str(target)]) == 0
    calibration = Calibration.from_json(target.read_text())
    assert calibration.global_map == LogitMap() and calibration.map_for("globex").apply(0.7) == pytest.approx(0.7)
    captured = capsys.readouterr()
    assert set(json.loads(captured.out)["fits"]["*"]["unusable"]) == {"temperature", "platt"}
    assert "no calibrator beat the raw P(unsafe)" in captured.err


def test_the_file_carries_its_version_and_an_edited_file_is_refused(tmp_path):
    calibration = Calibration(LogitMap(1.5, -0.3, "platt"), {"a": LogitMap.temperature(2.0)}, {"*": 40, "a": 30})
    data = json.loads(calibration.to_json())
    assert data["version"] == calibration.version and data["format"] == 2
    data["global"]["intercept"] = 0.0
    with pytest.raises(ValueError, match="does not match its content"):
        Calibration.from_json(json.dumps(data))
    old = Calibration.from_json(json.dumps({"method": "temperature", "global_temperature": 2.0}))  # format 1
    assert old.global_map == LogitMap(0.5, 0.0, "temperature")
