"""Ship a fitted decision head as the embedded guard's head: its files into `transforms/engines/embedded_guard/head/`.

Before copying, the served model folder is built from the model the head was fitted on
(`transforms.engines.decision_head.build_guard_folder`) and run on validation records: a folded head through a
transformers forward of the folded model (the logit difference at the box), a pooled head through its own pooling
engine and served weights (`FeatureReader` + `PooledHead`, as the job serves it). The served score is compared with
the fitted head's score on the run's features (the serving's measured loss). `training.json` beside the head records
the run's data, features, fit, that check and the head's version (the hash the job records on every verdict).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from training.export import _git_commit
from training.head_data import read_records
from training.head_fit import head_log_odds, scores_report, sigmoid
from transforms.engines.chat_format import score_position_ids
from transforms.engines.decision_head import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    build_guard_folder,
    final_layer,
    head_version,
    norm_weight,
)
from transforms.engines.embedded_model import GUARD_HEAD_DIR, resolve_model
from transforms.engines.served_head import POOLED
from transforms.engines.text_prior import TEXT_PRIOR_FILES


def served_scores(model_dir: str, sequences: list[list[int]]) -> np.ndarray:
    """`logit(decision) - logit(safe)` at the last token of each sequence of a folded model, from a transformers
    forward."""
    import torch
    from transformers import AutoModelForCausalLM

    from transforms.engines.served_head import ServedHead

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    head = ServedHead.read(model_dir)
    safe, unsafe = head.safe_token, head.decision_token
    scores = []
    with torch.no_grad():
        for ids in sequences:
            logits = model(torch.tensor([ids])).logits[0, -1]
            scores.append(float(logits[unsafe] - logits[safe]))
    return np.asarray(scores)


def pooled_scores(model_dir: str, sequences: list[list[int]]) -> np.ndarray:
    """A pooled head's served score (`unsafe` minus `safe` read-out) at the last token of each sequence."""
    from transforms.engines.feature_reader import FeatureReader
    from transforms.engines.served_head import ServedHead

    head = ServedHead.read(model_dir)
    logprobs = head.readout_logprobs(FeatureReader(model_dir, head.layers).read(sequences), ("safe", "unsafe"))
    return np.asarray([s["unsafe"] - s["safe"] for s in logprobs])


def serving_check(run_dir: Path, base_dir: str, rows: int, seed: int = 0) -> dict:
    """The served model's score against the fitted head's, on `rows` validation records."""
    from transformers import AutoTokenizer

    records = read_records(run_dir)
    features = np.load(run_dir / "features" / "features.npy")
    layers = json.loads((run_dir / "features" / "extraction.json").read_text())["layers"]
    z = head_log_odds(run_dir / "head", features, layers, norm_weight(base_dir), final_layer(base_dir))
    validation = [i for i, r in enumerate(records) if r["split"] == "validation"]
    picked = sorted(random.Random(seed).sample(validation, min(rows, len(validation))))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    sequences = [score_position_ids(tokenizer, records[i]["user_message"]) for i in picked]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        served_head = build_guard_folder(base_dir, run_dir / "head", Path(folder))
        served = (pooled_scores if served_head.kind == POOLED else served_scores)(folder, sequences)
    fitted = z[picked]
    y = np.array([records[i]["label"] == "unsafe" for i in picked], dtype=int)
    return {
        "served_as": served_head.kind,
        "rows": len(picked),
        "correlation": float(np.corrcoef(fitted, served)[0, 1]),
        "max_abs_diff": float(np.max(np.abs(fitted - served))),
        "max_abs_p_diff": float(np.max(np.abs(sigmoid(fitted) - sigmoid(served)))),
        "fitted": {k: v for k, v in scores_report(y, fitted).items() if k in ("auroc", "f1", "log_loss")},
        "served": {k: v for k, v in scores_report(y, served).items() if k in ("auroc", "f1", "log_loss")},
        "wall_s": round(time.monotonic() - started, 1),
    }


def export_head(run_dir: Path, dest: Path = GUARD_HEAD_DIR, check_rows: int = 200) -> dict:
    """Check the run's head as served, copy it into `dest` and write `training.json`."""
    head = run_dir / "head"
    for name in (HEAD_CONFIG, HEAD_WEIGHTS):
        if not (head / name).is_file():
            raise FileNotFoundError(f"{head / name} is missing: run python -m training head --out {run_dir} first")
    summary = json.loads((run_dir / "training.json").read_text())
    base = resolve_model(json.loads((head / HEAD_CONFIG).read_text())["base"])
    check = serving_check(run_dir, base, check_rows)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (HEAD_CONFIG, HEAD_WEIGHTS, *TEXT_PRIOR_FILES):
        if (head / name).is_file():
            shutil.copyfile(head / name, dest / name)
        else:
            (dest / name).unlink(missing_ok=True)  # a head without a text prior drops the one it replaces
    provenance = {
        "head_version": head_version(dest),
        "exported_from": str(run_dir),
        "git_commit": _git_commit(),
        "config": summary["config"],
        "records": summary["records"],
        "features": summary["features"],
        "fit": summary["fit"],
        "text_prior": summary.get("text"),  # the stacked text prior's figures (step `text`), if the run has one
        "serving_check": check,
    }
    (dest / "training.json").write_text(json.dumps(provenance, indent=2, default=float) + "\n", encoding="utf-8")
    return provenance
