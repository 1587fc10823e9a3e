"""Step `text` of `python -m training head`: a text prior stacked on the fitted head (`transforms.engines.text_prior`).

The text model is TF-IDF + logistic regression (`training.head_fit.fit_tfidf`) on the conversation block of each
record's rendered prompt (`transforms.prompts.render.conversation_block`: the lines the guard reads, as the job
serves them), fitted on the training rows. The stack, `a · head + c · text + b`, is a logistic regression fitted on
the validation rows, where neither model was fitted; its reported validation figures are a 2-fold cross-fit (each
half scored by the stack fitted on the other). The prior is kept only if the stack's cross-fit validation AUROC
beats the head's and the head is served pooled (a folded head has no place for it); then it is written beside
the head (`OUT/head/text_prior.*`), which changes the head's version.
Recorded: both models' and the stack's validation figures, by policy kind, and policy following (mean P(unsafe) of
unsafe texts under a policy with and without their category); the served arithmetic against scikit-learn's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.head_fit import adaptation, by_group, fit_tfidf, head_log_odds, scores_report
from transforms.engines.decision_head import (
    final_layer,
    head_version,
    is_foldable,
    norm_weight,
    read_head,
)
from transforms.engines.text_prior import TEXT_PRIOR_FILES, TextPrior
from transforms.prompts.render import conversation_block

TEXT_MAX_FEATURES = 50_000  # of ~86,000 terms seen twice in all rows: the same validation AUROC, a smaller file
CROSS_FIT_SEED = 0
CHECK_ROWS = 500


def _logistic(S: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(S, y)


def cross_fit(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Stacked log-odds of every row from a stack fitted on the other half of the rows."""
    order = np.random.default_rng(CROSS_FIT_SEED).permutation(len(y))
    halves = (order[::2], order[1::2])
    z = np.empty(len(y))
    for fit_on, score_on in (halves, halves[::-1]):
        z[score_on] = _logistic(S[fit_on], y[fit_on]).decision_function(S[score_on])
    return z


def _figures(records: Sequence[dict], y: np.ndarray, z: np.ndarray, z_calibrated: np.ndarray) -> dict:
    return {
        "validation": scores_report(y, z),
        "by_policy_kind": {k: v["auroc"] for k, v in by_group(records, y, z, "policy_kind").items()},
        "adaptation": adaptation(records, z_calibrated),
    }


def text_step(records: Sequence[dict], out: Path, model_dir: str) -> dict:
    """Fit the text prior and its stack on the run's head; write it beside the head if it validates better."""
    started = time.monotonic()
    head_dir = out / "head"
    for name in TEXT_PRIOR_FILES:  # a rerun fits afresh, on the head alone
        (head_dir / name).unlink(missing_ok=True)
    config, _ = read_head(head_dir)
    layers = json.loads((out / "features" / "extraction.json").read_text())["layers"]
    features = np.load(out / "features" / "features.npy", mmap_mode="r")
    y = np.array([r["label"] == "unsafe" for r in records], dtype=int)
    train = np.array([r["split"] == "train" for r in records])
    val = ~train
    z_head = head_log_odds(head_dir, np.asarray(features[val]), layers, norm_weight(model_dir), final_layer(model_dir))
    texts = [conversation_block(r["user_message"]) for r in records]
    validation = [r for r, v in zip(records, val, strict=True) if v]
    val_texts = [t for t, v in zip(texts, val, strict=True) if v]
    text_report, z_text, vectorizer, model = fit_tfidf(
        [t for t, k in zip(texts, train, strict=True) if k], val_texts, y[train], y[val], TEXT_MAX_FEATURES
    )
    S = np.stack([z_head, z_text], axis=1)
    stack = _logistic(S, y[val])
    z_stack = cross_fit(S, y[val])
    head_calibrated = _logistic(z_head[:, None], y[val]).decision_function(z_head[:, None])
    prior = TextPrior.from_fitted(vectorizer, model, stack)
    picked = np.flatnonzero(val)[:CHECK_ROWS]
    served = np.asarray(prior.text_log_odds([texts[i] for i in picked]))
    fitted = model.decision_function(vectorizer.transform([texts[i] for i in picked]))
    report = {
        "text": {**_figures(validation, y[val], z_text, z_text), "fit": text_report},
        "head": _figures(validation, y[val], z_head, head_calibrated),
        "stack": {
            **_figures(validation, y[val], z_stack, z_stack),
            "weights": {"head": prior.head_weight, "text": prior.text_weight, "intercept": prior.stack_intercept},
        },
        "served_check": {"rows": len(picked), "max_abs_diff": float(np.max(np.abs(served - fitted)))},
    }
    better = report["stack"]["validation"]["auroc"] > report["head"]["validation"]["auroc"]
    kept = better and not is_foldable(config, final_layer(model_dir))  # a prior is served beside a pooled head
    if kept:
        prior.write(head_dir)
    report["kept"] = kept
    report["head_version"] = head_version(head_dir)
    report["wall_s"] = round(time.monotonic() - started, 1)
    (out / "text.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report
