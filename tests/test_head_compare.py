"""`benchmarks/head_compare.py`: saved heads side by side on a head run's validation rows, each read at its own
layer (synthetic features: one layer carries the label)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests.test_head_fit import LAYERS, _model_dir, _records_and_features
from training.head_fit import fit_step
from transforms.engines.decision_head import write_head

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from head_compare import compare, main


def _run(tmp_path):
    records, features = _records_and_features()
    run = tmp_path / "run"
    (run / "features").mkdir(parents=True)
    np.save(run / "features" / "features.npy", features)
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    model_dir = _model_dir(tmp_path)
    (run / "training.json").write_text(json.dumps({"config": {"layers": list(LAYERS), "model_dir": model_dir}}))
    fit_step(records, run, types.SimpleNamespace(model_dir=model_dir, layers=LAYERS, base="embedded:lora"))
    return run, features.shape[-1]


def test_each_head_is_read_at_its_layer_on_the_validation_rows(tmp_path):
    run, hidden = _run(tmp_path)  # the fitted head reads layer 12, which carries the label
    write_head(tmp_path / "blind", np.random.default_rng(1).normal(size=hidden), [30], {}, {})
    figures = compare(run, {"fitted": run / "head", "blind": tmp_path / "blind"})
    assert figures["validation_rows"] == 120
    fitted, final = figures["heads"]["fitted"], figures["heads"]["blind"]
    fit = json.loads((run / "fit.json").read_text())
    assert fitted["validation"]["auroc"] == pytest.approx(fit["decision"]["validation"]["auroc"])
    assert fitted["validation"]["auroc"] > 0.95 and final["validation"]["auroc"] < 0.75
    assert set(fitted["by_level"]) == {"prompt"} and fitted["mean_auroc_over_sources"] > 0.95


def test_the_command_writes_json_and_refuses_a_bad_head_spec(tmp_path, capsys):
    run, _ = _run(tmp_path)
    out = tmp_path / "compare.json"
    assert main(["--run", str(run), "--head", f"fitted={run / 'head'}", "--out", str(out)]) == 0
    assert "fitted: AUROC" in capsys.readouterr().out
    assert json.loads(out.read_text())["heads"]["fitted"]["validation"]["n"] == 120
    for argv, message in [
        (["--run", str(run), "--head", str(run / "head")], "--head takes NAME=FOLDER"),
        (["--run", str(tmp_path / "nowhere"), "--head", f"fitted={run / 'head'}"], "records.jsonl is missing"),
        (["--run", str(run), "--head", f"typo={run / 'hed'}"], "is not a saved head: it has no head.json"),
    ]:
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2 and message in capsys.readouterr().err


def test_two_models_features_are_compared_on_the_rows_both_extracted(tmp_path):
    """`benchmarks/head_base_compare.py`: a run whose features carry the label beats one whose features do not, on
    the rows both runs have (a stopped run counts its saved chunks only)."""
    from head_base_compare import compare as compare_models

    records, informative = _records_and_features()
    records = [{**r, "user_message": f"rendered prompt {i}"} for i, r in enumerate(records)]
    model_dir = _model_dir(tmp_path)
    noise = np.random.default_rng(7).normal(size=informative.shape)
    runs = {}
    for name, features in (("informative", informative), ("noise", noise)):
        run = tmp_path / name
        (run / "features").mkdir(parents=True)
        (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (run / "training.json").write_text(json.dumps({"config": {"layers": list(LAYERS), "model_dir": model_dir}}))
        if name == "noise":  # stopped after its first chunk: 400 of the 600 rows
            np.save(run / "features" / "chunk-0.npy", features[:400].astype(np.float32))
        else:
            np.save(run / "features" / "features.npy", features)
        runs[name] = run
    figures = compare_models(runs, min_validation=50)
    assert figures["rows"] == 400 and figures["validation"] == 80
    assert figures["held_out"] == "the runs' validation split"
    informative_auroc = figures["runs"]["informative"]["concat"]["validation_auroc"]
    assert informative_auroc > 0.95 > 0.75 > figures["runs"]["noise"]["concat"]["validation_auroc"]
    fallback = compare_models(runs)  # 80 validation rows in common are too few: a seeded fifth is held out
    assert fallback["held_out"].startswith("a seeded 20%") and 60 < fallback["validation"] < 100
    assert fallback["runs"]["informative"]["concat"]["validation_auroc"] > 0.95
