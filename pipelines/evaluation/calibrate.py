"""Fit a calibration map for the guard's P(unsafe) from labelled verdicts, and say what it buys on held-out labels.

    python -m pipelines.calibrate --labels OUT [--labelled FILE.parquet]... --to calibration.json
        [--min-labels 30] [--report calibration-report.json]

Labels come from the reviewer loop (`OUT/labels/`, `python -m pipelines.review import`) and/or labelled files
with columns `tenant_id`, `p_unsafe`, `label` (`safe`/`unsafe`; e.g. an evaluation run's verdicts joined with the
gold labels). Fewer than `--min-labels` labels, or labels of one class only, are refused: nothing is written.

Three maps on the log-odds compete (`transforms.judging.calibration`): `identity` (the raw P), `temperature`
(p' = sigmoid(logit(p) / T); it cannot move the 0.5 point) and `platt` (p' = sigmoid(a·logit(p) + b), which
can). Each is scored by its log loss on held-out labels (5-fold cross-validation) and the lowest wins: a map that
does not beat the raw P on labels it was not fitted on is not used, so calibration does not make the held-out log
loss worse than the raw P's. A fit at its search bound (the labels do not constrain it) is left out. Per tenant
with at least `--min-labels` labels of both classes (else the global map). The report gives, per fitted map, each
method's held-out log loss and the ECE (10 equal-width bins) before and after on held-out labels; per tenant and
overall, the calibrated thresholds that reach 0.9 precision / 0.9 recall. The job loads it with `--calibration`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence

import polars as pl

from pipelines.audit.cli import (
    AuditParser,
    MissingInputError,
    UsageError,
    check_target,
    positive_int,
    require_file,
    run_politely,
)
from pipelines.audit.label_agreement import scan_labels
from pipelines.evaluation.scores import expected_calibration_error
from transforms.judging.calibration import METHODS, Calibration, LogitMap, logit, sigmoid

FOLDS = 5
T_BOUNDS = (0.02, 50.0)  # the temperature search interval; a fit within 1 % of an end is at the bound
MAX_SLOPE = 50.0  # a Platt slope beyond this (or below 1/MAX_SLOPE) is a fit the labels do not constrain


class CalibrationError(ValueError):
    """The labels cannot support a calibration (too few, one class, ...): the message says why."""


def labelled_points(outputs: Sequence[str], files: Sequence[str]) -> pl.DataFrame:
    """(tenant_id, p_unsafe, y) rows from reviewers' labels and labelled files; rows without P are dropped."""
    frames = []
    for output in outputs:
        labels = scan_labels(output)
        if labels is not None:
            frames.append(labels.select("tenant_id", p_unsafe=pl.col("guard_p_unsafe"), label="label").collect())
    for path in files:
        frames.append(pl.read_parquet(path).select("tenant_id", "p_unsafe", "label"))
    if not frames:
        raise MissingInputError("no labels: give --labels OUT (with imported reviewer labels) or --labelled FILE")
    points = pl.concat(frames).drop_nulls(["p_unsafe", "label"])
    bad = points.filter(~pl.col("label").is_in(["safe", "unsafe"]))
    if bad.height:
        raise CalibrationError(f"labels must be 'safe' or 'unsafe'; found {bad['label'].unique().to_list()[:5]}")
    return points.with_columns(y=(pl.col("label") == "unsafe").cast(pl.Int8))


def log_loss(q: Sequence[float], y: Sequence[int]) -> float:
    """Mean negative log-likelihood of labels `y` under probabilities `q`."""
    total = 0.0
    for qi, yi in zip(q, y, strict=True):
        qi = min(max(qi, 1e-12), 1 - 1e-12)
        total -= yi * math.log(qi) + (1 - yi) * math.log(1 - qi)
    return total / len(y)


def fit_temperature(p: Sequence[float], y: Sequence[int]) -> float:
    """The temperature minimising the log loss of sigmoid(logit(p) / T) (golden-section search on log T)."""
    z = [logit(x) for x in p]

    def loss(log_t: float) -> float:
        t = math.exp(log_t)
        return log_loss([sigmoid(zi / t) for zi in z], y)

    low, high = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    for _ in range(60):
        if loss(a) < loss(b):
            high, b = b, a
            a = high - ratio * (high - low)
        else:
            low, a = a, b
            b = low + ratio * (high - low)
    return math.exp((low + high) / 2)


def at_bound(t: float) -> bool:
    """Whether a fitted temperature sits at its search bound (within 1 %)."""
    return t <= T_BOUNDS[0] * 1.01 or t >= T_BOUNDS[1] * 0.99


def fit_platt(p: Sequence[float], y: Sequence[int], iterations: int = 50) -> tuple[float, float]:
    """(slope, intercept) of logistic regression of y on logit(p), by Newton's method, with Platt's smoothed
    targets ((N₊+1)/(N₊+2) and 1/(N₋+2)) so separable labels do not diverge."""
    z = [logit(x) for x in p]
    positives = sum(y)
    high, low = (positives + 1) / (positives + 2), 1 / (len(y) - positives + 2)
    targets = [high if yi else low for yi in y]
    a, b = 1.0, 0.0
    for _ in range(iterations):
        ga = gb = haa = hab = hbb = 0.0
        for zi, ti in zip(z, targets, strict=True):
            q = sigmoid(a * zi + b)
            w = max(q * (1 - q), 1e-12)
            ga, gb = ga + (q - ti) * zi, gb + (q - ti)
            haa, hab, hbb = haa + w * zi * zi, hab + w * zi, hbb + w
        det = haa * hbb - hab * hab
        if det <= 1e-12:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a, b


def fit_map(method: str, p: Sequence[float], y: Sequence[int]) -> LogitMap | None:
    """The `method`'s map fitted on (p, y); None when the fit is at its bound or not a usable map."""
    if method == "identity":
        return LogitMap()
    if method == "temperature":
        t = fit_temperature(p, y)
        return None if at_bound(t) else LogitMap.temperature(t)
    slope, intercept = fit_platt(p, y)
    if not (1 / MAX_SLOPE <= slope <= MAX_SLOPE and math.isfinite(intercept)):
        return None
    return LogitMap(slope, intercept, "platt")


def _folds(n: int, seed: int = 0) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold = [0] * n
    for rank, index in enumerate(order):
        fold[index] = rank % FOLDS
    return fold


def held_out(p: list[float], y: list[int]) -> dict[str, dict]:
    """Per method: its log loss on held-out folds (`log_loss`, None if a fold's fit was unusable), and the
    held-out calibrated probabilities (`q`)."""
    fold = _folds(len(p))
    scores = {}
    for method in METHODS:
        q: list[float | None] = [None] * len(p)
        for k in range(FOLDS):
            train = [i for i in range(len(p)) if fold[i] != k]
            fitted = fit_map(method, [p[i] for i in train], [y[i] for i in train])
            if fitted is None:
                break
            for i in range(len(p)):
                if fold[i] == k:
                    q[i] = fitted.apply(p[i])
        usable = all(v is not None for v in q)
        scores[method] = {"log_loss": log_loss(q, y) if usable else None, "q": q if usable else None}
    return scores


def choose(p: list[float], y: list[int]) -> tuple[LogitMap, dict]:
    """The method with the lowest held-out log loss, refitted on every label; and its held-out summary."""
    scores = held_out(p, y)
    usable = {m: s for m, s in scores.items() if s["log_loss"] is not None}
    best = min(usable, key=lambda m: (usable[m]["log_loss"], METHODS.index(m)))
    fitted = fit_map(best, p, y) or LogitMap()
    summary = {
        "method": fitted.method,
        "held_out_log_loss": {m: s["log_loss"] for m, s in scores.items()},
        "held_out_ece_before": expected_calibration_error(y, p),
        "held_out_ece_after": expected_calibration_error(y, usable[best]["q"]),
        "unusable": sorted(m for m in METHODS if scores[m]["log_loss"] is None),
    }
    return fitted, summary


def check_labels(n: int, positives: int, min_labels: int, who: str = "") -> None:
    """Refuse too few labels or labels of one class."""
    if n < min_labels:
        raise CalibrationError(f"{who}{n} label(s), fewer than --min-labels {min_labels}: too few to fit a "
                               "calibration; nothing written")  # fmt: skip
    if positives in (0, n):
        side = "unsafe" if positives else "safe"
        raise CalibrationError(f"{who}all {n} labels are '{side}': a calibration needs both safe and unsafe "
                               "labels; nothing written")  # fmt: skip


def fit(points: pl.DataFrame, min_labels: int = 30) -> tuple[Calibration, dict]:
    """The calibration (global + tenants with enough labels of both classes) and its report."""
    p, y = points["p_unsafe"].to_list(), points["y"].to_list()
    check_labels(len(p), sum(y), min_labels)
    global_map, global_summary = choose(p, y)
    tenants, fitted_on, summaries = {}, {"*": len(p)}, {"*": global_summary}
    for (tenant,), rows in points.group_by("tenant_id", maintain_order=True):
        if rows.height >= min_labels and 0 < rows["y"].sum() < rows.height:
            tenants[tenant], summaries[tenant] = choose(rows["p_unsafe"].to_list(), rows["y"].to_list())
            fitted_on[tenant] = rows.height
    calibration = Calibration(global_map, tenants, fitted_on)
    return calibration, report(calibration, points, summaries)


def threshold_for(p: Sequence[float], y: Sequence[int], target: float, metric: str) -> float | None:
    """The lowest threshold whose precision reaches `target` (metric `precision`), or the highest whose recall
    does (`recall`); None when no threshold does."""
    candidates = sorted(set(p))
    positives = sum(y)
    best = None
    for t in candidates:
        flagged = [(pi, yi) for pi, yi in zip(p, y, strict=True) if pi >= t]
        hits = sum(yi for _, yi in flagged)
        if metric == "precision" and flagged and hits / len(flagged) >= target:
            return t
        if metric == "recall" and positives and hits / positives >= target:
            best = t
    return best


def report(calibration: Calibration, points: pl.DataFrame, fits: dict[str, dict],
           targets: tuple[float, float] = (0.9, 0.9)) -> dict:  # fmt: skip
    """Per fitted map (global `*` and tenants): method, held-out log loss per method, held-out ECE before/after;
    per tenant and overall: labels and the calibrated thresholds that meet the targets."""

    def thresholds(rows: pl.DataFrame) -> dict:
        y = rows["y"].to_list()
        cal = [calibration.apply(t, x) for t, x in zip(rows["tenant_id"], rows["p_unsafe"], strict=True)]
        return {
            "labels": len(y),
            f"threshold_precision_{targets[0]}": threshold_for(cal, y, targets[0], "precision"),
            f"threshold_recall_{targets[1]}": threshold_for(cal, y, targets[1], "recall"),
        }

    per_tenant = {t: thresholds(r) for (t,), r in points.group_by("tenant_id", maintain_order=True)}
    maps = {"*": calibration.global_map, **calibration.tenant_maps}
    return {"version": calibration.version, "overall": thresholds(points), "tenants": per_tenant,
            "fits": {k: {**fits[k], **maps[k].to_dict()} for k in fits}}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = AuditParser(prog="python -m pipelines.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--labels", action="append", default=[], help="an output folder with OUT/labels/")
    parser.add_argument("--labelled", action="append", default=[], help="Parquet: tenant_id, p_unsafe, label")
    parser.add_argument("--to", required=True, help="the calibration file to write (JSON)")
    parser.add_argument("--min-labels", type=positive_int, default=30, help="labels a fit needs (global, per tenant)")
    parser.add_argument("--report", help="also write the report (JSON) here")
    return parser


def calibrate_command(args: argparse.Namespace) -> int:
    """The calibrate command, after parsing."""
    if not (args.labels or args.labelled):
        raise UsageError("give --labels OUT (with imported reviewer labels) and/or --labelled FILE.parquet")
    check_target("--to", args.to, (".json",))
    if args.report:
        check_target("--report", args.report, (".json",))
    for output in args.labels:
        if "://" not in output and scan_labels(output) is None:
            raise MissingInputError(f"--labels {output}: no imported labels under labels/ (python -m pipelines.review "
                                    "import)")  # fmt: skip
    for path in args.labelled:
        require_file("--labelled", path)
    try:
        calibration, summary = fit(labelled_points(args.labels, args.labelled), args.min_labels)
    except CalibrationError as exc:
        raise UsageError(str(exc)) from exc
    with open(args.to, "w", encoding="utf-8") as handle:
        handle.write(calibration.to_json() + "\n")
    text = json.dumps(summary, indent=2)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text)
    methods = {m.method for m in (calibration.global_map, *calibration.tenant_maps.values())}
    if methods == {"identity"}:
        print("note: no calibrator beat the raw P(unsafe) on held-out labels; the file keeps P as it is",
              file=sys.stderr)  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_politely(parser.prog, lambda: calibrate_command(args))


if __name__ == "__main__":
    sys.exit(main())
