"""The decision head's fit on synthetic features: the informative read-out is chosen on validation (one layer, or
every layer together where the label is spread over layers), the head and its category heads are saved, and the
TF-IDF baseline and intercept comparison are reported."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

pytest.importorskip("sklearn")

from training.head_fit import fit_step
from transforms.engines.decision_head import read_head

HIDDEN, LAYERS = 8, (12, 20)


def _model_dir(tmp_path):
    from safetensors.numpy import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"model.norm.weight": np.full(HIDDEN, 2.0, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 30}))
    return str(folder)


def _records_and_features(n: int = 600, seed: int = 0, spread: bool = False):
    rng = np.random.default_rng(seed)
    records, features = [], np.zeros((n, 1 + len(LAYERS), HIDDEN), dtype=np.float32)
    for i in range(n):
        unsafe = i % 2 == 0
        codes = ["U1"] if unsafe and i % 4 == 0 else (["U8"] if unsafe else [])
        label = "unsafe" if unsafe else "safe"
        records.append({
            "label": label, "gold_label": label, "split": "validation" if i % 5 == 0 else "train",
            "level": "prompt", "source": "synthetic", "policy_kind": "default", "codes": codes,
            "messages": [["user", ("how to hurt someone" if unsafe else "how to bake bread") + f" {i}"]],
        })  # fmt: skip
        features[i] = rng.normal(size=(1 + len(LAYERS), HIDDEN))
        features[i, 1, 0] += 3.0 if unsafe else -3.0  # layer 12 carries the label
        if spread:  # noisier, and as much again in layer 20: no single layer separates as well as both
            features[i, 1, 0] += rng.normal(scale=4.0)
            features[i, 2, 3] += (3.0 if unsafe else -3.0) + rng.normal(scale=4.0)
        features[i, 0, 1] += 3.0 if "U1" in codes else 0.0  # the final state carries U1
    return records, features


def test_fit_chooses_the_informative_layer_and_saves_a_head(tmp_path):
    records, features = _records_and_features()
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    np.save(out / "features" / "features.npy", features)
    config = types.SimpleNamespace(model_dir=_model_dir(tmp_path), layers=LAYERS, base="embedded:lora")
    fit = fit_step(records, out, config)
    decision = fit["decision"]
    assert decision["candidate"] == "12" and decision["layers"] == [12]
    assert decision["validation"]["auroc"] > 0.95 and decision["validation"]["ece"] is not None
    assert decision["validation_with_intercept"]["auroc"] == pytest.approx(decision["validation"]["auroc"], abs=0.02)
    assert fit["tfidf_baseline"]["validation"]["auroc"] is not None
    curve = fit["rows_curve"]  # nested shares of the training rows; all of them is the chosen fit again
    assert [c["train_rows"] for c in curve.values()] == sorted(c["train_rows"] for c in curve.values())
    assert curve["1"]["train_rows"] == fit["rows"]["train"]
    assert curve["1"]["auroc"] == pytest.approx(decision["validation"]["auroc"])
    assert fit["categories"]["U1"]["fitted"] and fit["categories"]["U1"]["validation_auroc"] > 0.9
    head_config, tensors = read_head(out / "head")
    assert head_config["layers"] == [12] and head_config["base"] == "embedded:lora"
    assert tensors["decision"].shape == (HIDDEN,) and "U1" in head_config["category_codes"]
    assert json.loads((out / "fit.json").read_text())["head_version"] == fit["head_version"]


def test_a_label_spread_over_layers_chooses_every_layer_together(tmp_path):
    records, features = _records_and_features(1000, spread=True)
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    np.save(out / "features" / "features.npy", features)
    config = types.SimpleNamespace(model_dir=_model_dir(tmp_path), layers=LAYERS, base="embedded:lora")
    fit = fit_step(records, out, config)
    assert fit["decision"]["candidate"] == "concat" and fit["decision"]["layers"] == [12, 20, 30]
    best_single = max(v["auroc"] for k, v in fit["grid"].items() if not k.startswith("concat@"))
    assert fit["decision"]["validation"]["auroc"] > best_single + 0.02
    head_config, tensors = read_head(out / "head")
    assert head_config["layers"] == [12, 20, 30] and tensors["decision"].shape == (3 * HIDDEN,)


def test_fit_refuses_features_that_do_not_match_the_records(tmp_path):
    records, features = _records_and_features(100)
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    np.save(out / "features" / "features.npy", features[:50])
    config = types.SimpleNamespace(model_dir=_model_dir(tmp_path), layers=LAYERS, base="embedded:lora")
    with pytest.raises(RuntimeError, match="50 feature rows for 100 records"):
        fit_step(records, out, config)


def test_an_unknown_candidate_is_a_usage_error_before_any_work():
    from training.head import HeadConfig

    with pytest.raises(ValueError, match=r"unknown --candidates \['99'\]"):
        HeadConfig("out", "model", "embedded:lora", candidates=("final", "99"))
    assert HeadConfig("out", "model", "embedded:lora", candidates=("final", "22")).candidates == ("final", "22")


def _text_run(tmp_path, candidates=()):
    """A fitted run whose features carry the label weakly and whose conversation text carries it fully."""
    from policies import DEFAULT_POLICY_ID, load_policies
    from transforms.prompts.render import render_prompt
    from transforms.records import Message

    policy = load_policies()[DEFAULT_POLICY_ID]
    records, features = _records_and_features(400)
    rng = np.random.default_rng(1)
    features[:, 1, 0] = np.where([r["label"] == "unsafe" for r in records], 0.5, -0.5) + rng.normal(size=400)
    for record in records:
        record["user_message"] = render_prompt(policy, [Message(*record["messages"][0])], "prompt")
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    np.save(out / "features" / "features.npy", features)
    (out / "features" / "extraction.json").write_text(json.dumps({"layers": list(LAYERS)}))
    config = types.SimpleNamespace(model_dir=_model_dir(tmp_path), layers=LAYERS, base="embedded:lora",
                                   candidates=candidates)  # fmt: skip
    fit_step(records, out, config)
    return records, out, config


def test_the_text_step_stacks_a_prior_that_validates_better_and_records_why(tmp_path):
    from training.head_text import text_step
    from transforms.engines.decision_head import head_version
    from transforms.engines.text_prior import TextPrior

    records, out, config = _text_run(tmp_path)
    alone = head_version(out / "head")
    report = text_step(records, out, config.model_dir)
    assert report["kept"] and report["stack"]["validation"]["auroc"] > report["head"]["validation"]["auroc"]
    assert report["served_check"]["max_abs_diff"] < 1e-9
    assert report["head_version"] == head_version(out / "head") != alone
    assert TextPrior.read(out / "head") is not None
    assert json.loads((out / "text.json").read_text())["kept"]
    assert text_step(records, out, config.model_dir)["head_version"] == report["head_version"]  # a rerun: the same


def test_a_folded_head_gets_no_text_prior(tmp_path):
    from training.head_text import text_step
    from transforms.engines.text_prior import TextPrior

    records, out, config = _text_run(tmp_path, candidates=("final",))
    report = text_step(records, out, config.model_dir)
    assert not report["kept"] and TextPrior.read(out / "head") is None
