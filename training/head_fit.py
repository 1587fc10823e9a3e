"""Fit the decision head on extracted features, choose its layer on the validation split, fit category heads.

The decision head is a logistic regression through the origin (no bias term, as the fold has none; the cost is
measured against the same fit with an intercept) on `x_k / rms(x_L)` for each candidate read-out: each extracted
layer k alone, the final state alone, and every extracted layer with the final state concatenated (`concat`);
features are scaled by their training root mean square (not centred) for the solver and the weights mapped back.
The read-out and the regularisation are chosen by validation AUROC. Category
heads are one-vs-rest regressions on the final normed state, for each default code with enough labelled rows: a
row is positive when its set names a category mapped to the code, negative when it is safe or names other
categories (unsafe rows without a category are left out). A TF-IDF + logistic regression baseline on the judged
conversation text of the same rows is the check the head must beat.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.evaluation import scores

log = logging.getLogger(__name__)

C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # all rows: 0.1 best for `concat`, 1-10 for single layers
MIN_CATEGORY_POSITIVES = 40
ROWS_CURVE_SHARES = (0.125, 0.25, 0.5, 1.0)
FINAL = "final"  # the candidate that reads the final normed state (foldable into the served model)
CONCAT = "concat"  # every extracted layer and the final state, concatenated (served pooled, beside the engine)


def logistic_regression(X: np.ndarray, y: np.ndarray, C: float, intercept: bool = False) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression, scikit-learn's objective (`0.5 |w|^2 + C * sum log loss`, the intercept
    not penalised), minimised by full-batch L-BFGS in float64 with torch: ~3 s for 15,630 rows x 576 features
    where scikit-learn's lbfgs took minutes on the same residual-stream features (measured 2026-12-07)."""
    import torch

    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=intercept)
    params = [w, b] if intercept else [w]
    opt = torch.optim.LBFGS(params, max_iter=200, tolerance_grad=1e-6, tolerance_change=1e-10, history_size=20,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w @ w) / (C * len(yt)) + torch.nn.functional.binary_cross_entropy_with_logits(Xt @ w + b, yt)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def fit_scaled(X: np.ndarray, y: np.ndarray, C: float, intercept: bool = False) -> tuple[np.ndarray, float]:
    """(weights over the raw features, intercept): fitted on features divided by their root mean square.

    Not by their standard deviation: a residual stream has dimensions with a large, nearly constant value (massive
    activations), which std-scaling blows up into an ill-conditioned problem; divided by their RMS, every feature
    is O(1) and those dimensions act as the intercept the fold cannot have."""
    scale = np.sqrt(np.mean(np.square(X), axis=0)) + 1e-6
    w, b = logistic_regression(X / scale, y, C, intercept)
    return (w / scale).astype(np.float32), b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def scores_report(y: np.ndarray, z: np.ndarray, threshold: float = 0.5) -> dict:
    """AUROC, F1 and accuracy at the threshold, log loss and ECE of decision scores `z` (log-odds)."""
    p = sigmoid(z)
    gold, predicted = [bool(v) for v in y], [bool(v) for v in p >= threshold]
    c = scores.confusion(gold, predicted)
    eps = 1e-12
    return {
        "n": len(y),
        "auroc": scores.auroc(gold, [float(v) for v in z]),
        "f1": scores.f1(c),
        "accuracy": scores.accuracy(c),
        "log_loss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
        "ece": scores.expected_calibration_error(gold, [float(v) for v in p]),
    }


def by_group(records: Sequence[dict], y: np.ndarray, z: np.ndarray, field) -> dict:
    """`scores_report` per value of a record field (or of a function of the record)."""
    keys = [field(r) if callable(field) else r[field] for r in records]
    out = {}
    for key in sorted(set(keys)):
        mask = np.array([k == key for k in keys])
        out[key] = {k: v for k, v in scores_report(y[mask], z[mask]).items() if k in ("n", "auroc", "f1")}
    return out


def source_name(record: dict) -> str:
    """The record's source without its collection prefix: `guardreasoner:WildGuardTrainR` → `WildGuardTrainR`."""
    return record["source"].split(":")[-1]


def candidate_features(features: np.ndarray, layers: Sequence[int], gamma: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate → `x_k / rms(x_L)` rows: each extracted layer, the final state (its normed form over γ), and all
    of them concatenated in `candidate_layers` order."""
    found = {str(k): features[:, 1 + i] for i, k in enumerate(layers)}
    found[FINAL] = features[:, 0] / gamma
    found[CONCAT] = np.concatenate([*(found[str(k)] for k in layers), found[FINAL]], axis=1)
    return found


def candidate_layers(candidate: str, layers: Sequence[int], final_layer: int) -> list[int]:
    """The read-out layers of a candidate, in the order of its features (the final state is layer L)."""
    if candidate == FINAL:
        return [final_layer]
    if candidate == CONCAT:
        return [*layers, final_layer]
    return [int(candidate)]


def head_features(
    features: np.ndarray, layers: Sequence[int], gamma: np.ndarray, head: Sequence[int], final_layer: int
) -> np.ndarray:
    """A saved head's features (its read-out layers, in order) from extracted features over `layers`."""
    blocks = []
    for k in head:
        if k in layers:
            blocks.append(features[:, 1 + list(layers).index(k)])
        elif k == final_layer:
            blocks.append(features[:, 0] / gamma)
        else:
            raise ValueError(f"the head reads layer {k}, which these features do not have (layers {list(layers)})")
    return np.concatenate(blocks, axis=1)


def head_log_odds(
    head_dir: Path, features: np.ndarray, layers: Sequence[int], gamma: np.ndarray, final_layer: int
) -> np.ndarray:
    """A saved head's decision log-odds for every row of extracted features, read at its own read-out layers."""
    from transforms.engines.decision_head import head_layers, read_head

    config, tensors = read_head(head_dir)
    return head_features(features, layers, gamma, head_layers(config), final_layer) @ tensors["decision"].numpy()


def adaptation(records: Sequence[dict], z: np.ndarray) -> dict:
    """Policy following on validation: P(unsafe) of unsafe-category texts under policies with and without it."""
    covered = [sigmoid(z[i]) for i, r in enumerate(records) if r["gold_label"] == "unsafe" and r["label"] == "unsafe"]
    removed = [sigmoid(z[i]) for i, r in enumerate(records) if r["gold_label"] == "unsafe" and r["label"] == "safe"]
    return {
        "covered_n": len(covered),
        "covered_mean_p": float(np.mean(covered)) if covered else None,
        "removed_n": len(removed),
        "removed_mean_p": float(np.mean(removed)) if removed else None,
    }


def conversation_text(messages: Sequence[Sequence[str]]) -> str:
    """The judged conversation as the TF-IDF baseline reads it: `role: content` lines."""
    return "\n".join(f"{role}: {content}" for role, content in messages)


def fit_tfidf(
    train_texts: Sequence[str], val_texts: Sequence[str], y_train, y_val, max_features: int = 200_000
) -> tuple[dict, np.ndarray, Any, Any]:
    """TF-IDF (word 1-2-grams) + logistic regression on texts, C chosen on validation AUROC:
    (report, validation scores, the fitted vectorizer, the fitted regression)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=max_features)
    X_train = vectorizer.fit_transform(list(train_texts))
    X_val = vectorizer.transform(list(val_texts))
    best = None
    for C in (1.0, 3.0, 10.0):
        model = LogisticRegression(C=C, max_iter=5000).fit(X_train, y_train)
        z = model.decision_function(X_val)
        report = scores_report(y_val, z)
        if best is None or report["auroc"] > best[0]["auroc"]:
            best = ({**report, "C": C, "vocabulary": len(vectorizer.vocabulary_)}, z, model)
    report, z, model = best
    return report, z, vectorizer, model


def tfidf_baseline(
    train: Sequence[dict], validation: Sequence[dict], y_train, y_val
) -> tuple[dict, np.ndarray, Callable[[Sequence[str]], np.ndarray]]:
    """The text baseline the head must beat: `fit_tfidf` on the records' conversations as `role: content` lines:
    (report, validation scores, a scorer of further texts)."""
    report, z, vectorizer, model = fit_tfidf(
        [conversation_text(r["messages"]) for r in train],
        [conversation_text(r["messages"]) for r in validation],
        y_train,
        y_val,
    )
    return report, z, lambda texts: model.decision_function(vectorizer.transform(list(texts)))


def fit_decision(
    candidates: dict[str, np.ndarray], y: np.ndarray, train: np.ndarray, val: np.ndarray
) -> tuple[dict, dict]:
    """(choice, grid): the candidate and C with the best validation AUROC, and every cell's figures."""
    grid: dict[str, dict] = {}
    best = None
    for name, X in candidates.items():
        for C in C_GRID:
            w, _ = fit_scaled(X[train], y[train], C)
            report = scores_report(y[val], X[val] @ w)
            log.info("head fit: %s C=%g validation AUROC %.4f", name, C, report["auroc"])
            grid[f"{name}@{C}"] = {k: report[k] for k in ("auroc", "log_loss", "f1")}
            if best is None or report["auroc"] > best["validation"]["auroc"]:
                best = {"candidate": name, "C": C, "weights": w, "validation": report}
    return best, grid


def rows_curve(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, C: float, shares=ROWS_CURVE_SHARES
) -> dict[str, dict]:
    """Validation AUROC of the chosen read-out refitted on nested random shares of the training rows (the last
    share is all of them, so it repeats the chosen fit): whether more rows still help."""
    order = np.random.default_rng(0).permutation(np.flatnonzero(train))
    curve = {}
    for share in shares:
        rows = order[: max(2, round(share * len(order)))]
        w, _ = fit_scaled(X[rows], y[rows], C)
        curve[f"{share:g}"] = {"train_rows": len(rows), "auroc": scores_report(y[val], X[val] @ w)["auroc"]}
    return curve


def fit_categories(
    records: Sequence[dict], normed: np.ndarray, train: np.ndarray, val: np.ndarray, C: float
) -> tuple[dict[str, np.ndarray], dict]:
    """Per default code with >= MIN_CATEGORY_POSITIVES training positives: weights over the final normed state."""
    known = np.array([r["gold_label"] == "safe" or bool(r["codes"]) for r in records])
    positives = collections.Counter(c for r, t in zip(records, train, strict=True) if t for c in r["codes"])
    heads, report = {}, {}
    for code in sorted(positives, key=lambda c: int(c[1:])):
        if positives[code] < MIN_CATEGORY_POSITIVES:
            report[code] = {"train_positives": positives[code], "fitted": False}
            continue
        y = np.array([r["gold_label"] == "unsafe" and code in r["codes"] for r in records], dtype=int)
        rows_train, rows_val = train & known, val & known
        w, _ = fit_scaled(normed[rows_train], y[rows_train], C)
        heads[code] = w
        val_report = scores_report(y[rows_val], normed[rows_val] @ w) if y[rows_val].any() else {}
        report[code] = {
            "train_positives": positives[code],
            "fitted": True,
            "validation_positives": int(y[rows_val].sum()),
            "validation_auroc": val_report.get("auroc"),
        }
    return heads, report


def fit_step(records: Sequence[dict], out: Path, config: Any) -> dict:
    """Fit, choose and save the head under `out/head`; returns the figures recorded in `training.json`."""
    from transforms.engines.decision_head import final_layer, norm_weight, write_head

    started = time.monotonic()
    features = np.load(out / "features" / "features.npy")
    if len(features) != len(records):
        raise RuntimeError(f"{len(features)} feature rows for {len(records)} records: rerun the features step")
    y = np.array([r["label"] == "unsafe" for r in records], dtype=int)
    train = np.array([r["split"] == "train" for r in records])
    val = ~train
    gamma = norm_weight(config.model_dir)
    candidates = candidate_features(features, config.layers, gamma)
    if getattr(config, "candidates", None):  # e.g. ("final",): a head that is folded into the served model
        candidates = {name: candidates[name] for name in config.candidates}
    choice, grid = fit_decision(candidates, y, train, val)
    X = candidates[choice["candidate"]]
    w_icpt, b = fit_scaled(X[train], y[train], choice["C"], intercept=True)
    with_intercept = scores_report(y[val], X[val] @ w_icpt + b)
    validation = [r for r, v in zip(records, val, strict=True) if v]
    z = X[val] @ choice["weights"]
    tfidf, z_tfidf, _ = tfidf_baseline(
        [r for r, t in zip(records, train, strict=True) if t], validation, y[train], y[val]
    )
    categories, category_report = fit_categories(records, features[:, 0], train, val, choice["C"])
    layers = candidate_layers(choice["candidate"], config.layers, final_layer(config.model_dir))
    fit = {
        "decision": {
            "candidate": choice["candidate"],
            "layers": layers,
            "C": choice["C"],
            "validation": choice["validation"],
            "validation_with_intercept": {**with_intercept, "intercept": b},
            "by_level": by_group(validation, y[val], z, "level"),
            "by_source": by_group(validation, y[val], z, source_name),
            "by_policy_kind": by_group(validation, y[val], z, "policy_kind"),
            "adaptation": adaptation(validation, z),
        },
        "grid": grid,
        "rows_curve": rows_curve(X, y, train, val, choice["C"]),
        "tfidf_baseline": {
            "validation": tfidf,
            "by_source": by_group(validation, y[val], z_tfidf, source_name),
        },
        "categories": category_report,
        "rows": {"train": int(train.sum()), "validation": int(val.sum())},
    }
    fit["wall_s"] = round(time.monotonic() - started, 1)
    head_config = {"base": config.base, "fit": {k: fit["decision"][k] for k in ("candidate", "C", "validation")}}
    fit["head_version"] = write_head(out / "head", choice["weights"], layers, categories, head_config)
    (out / "fit.json").write_text(json.dumps(fit, indent=2, default=float) + "\n")
    return fit
