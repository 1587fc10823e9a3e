"""Fit a calibration map for the guard's P(unsafe) from labelled verdicts, and say what it buys.

    python -m pipelines.calibrate --labels OUT [--labelled FILE.parquet]... --to calibration.json
        [--min-labels 30] [--target-precision 0.9] [--target-recall 0.9]

Labels come from the reviewer loop (`OUT/labels/`, `python -m pipelines.review import`) and/or labelled files
with columns `tenant_id`, `p_unsafe`, `label` (`safe`/`unsafe`; e.g. an evaluation run's verdicts joined with the
gold labels). Per tenant with at least `--min-labels` labels (else the global fit), a temperature T on the
log-odds is fitted by maximum likelihood: p' = sigmoid(logit(p) / T). Reports, per tenant and overall, the
expected calibration error (ECE, 10 equal-width bins) before and after, and the calibrated threshold that meets a
target precision / recall on those labels. The job loads the file with `--calibration FILE`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import polars as pl

from pipelines.metrics import expected_calibration_error
from pipelines.review import scan_labels
from transforms.calibration import Calibration, logit, sigmoid


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
        raise ValueError("no labels: give --labels OUT (with imported reviewer labels) or --labelled FILE")
    points = pl.concat(frames).drop_nulls(["p_unsafe", "label"])
    bad = points.filter(~pl.col("label").is_in(["safe", "unsafe"]))
    if bad.height:
        raise ValueError(f"labels must be 'safe' or 'unsafe'; found {bad['label'].unique().to_list()[:5]}")
    return points.with_columns(y=(pl.col("label") == "unsafe").cast(pl.Int8))


def fit_temperature(p: Sequence[float], y: Sequence[int]) -> float:
    """The temperature minimising the log loss of sigmoid(logit(p) / T) (golden-section search on log T)."""
    z = [logit(x) for x in p]

    def loss(log_t: float) -> float:
        t = math.exp(log_t)
        total = 0.0
        for zi, yi in zip(z, y, strict=True):
            q = min(max(sigmoid(zi / t), 1e-12), 1 - 1e-12)
            total -= yi * math.log(q) + (1 - yi) * math.log(1 - q)
        return total

    low, high = math.log(0.02), math.log(50.0)
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


def fit(points: pl.DataFrame, min_labels: int = 30) -> tuple[Calibration, dict]:
    """The calibration (global + tenants with enough labels) and its report."""
    p, y = points["p_unsafe"].to_list(), points["y"].to_list()
    global_t = fit_temperature(p, y)
    tenants, fitted_on = {}, {"*": len(p)}
    for (tenant,), rows in points.group_by("tenant_id", maintain_order=True):
        if rows.height >= min_labels and 0 < rows["y"].sum() < rows.height:
            tenants[tenant] = fit_temperature(rows["p_unsafe"].to_list(), rows["y"].to_list())
            fitted_on[tenant] = rows.height
    calibration = Calibration(global_t, tenants, fitted_on)
    return calibration, report(calibration, points)


def report(calibration: Calibration, points: pl.DataFrame, targets: tuple[float, float] = (0.9, 0.9)) -> dict:
    """ECE before/after and target thresholds, per tenant and overall."""

    def summary(rows: pl.DataFrame) -> dict:
        raw, y = rows["p_unsafe"].to_list(), rows["y"].to_list()
        cal = [calibration.apply(t, x) for t, x in zip(rows["tenant_id"].to_list(), raw, strict=True)]
        return {
            "labels": len(raw),
            "ece_before": expected_calibration_error(y, raw),
            "ece_after": expected_calibration_error(y, cal),
            f"threshold_precision_{targets[0]}": threshold_for(cal, y, targets[0], "precision"),
            f"threshold_recall_{targets[1]}": threshold_for(cal, y, targets[1], "recall"),
        }

    per_tenant = {t: summary(r) for (t,), r in points.group_by("tenant_id", maintain_order=True)}
    return {"version": calibration.version, "overall": summary(points), "tenants": per_tenant,
            "temperatures": {"*": calibration.global_temperature, **calibration.tenant_temperatures}}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--labels", action="append", default=[], help="an output folder with OUT/labels/")
    parser.add_argument("--labelled", action="append", default=[], help="Parquet: tenant_id, p_unsafe, label")
    parser.add_argument("--to", required=True, help="the calibration file to write (JSON)")
    parser.add_argument("--min-labels", type=int, default=30, help="labels a tenant needs for its own fit")
    parser.add_argument("--report", help="also write the report (JSON) here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        calibration, summary = fit(labelled_points(args.labels, args.labelled), args.min_labels)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with open(args.to, "w", encoding="utf-8") as handle:
        handle.write(calibration.to_json() + "\n")
    text = json.dumps(summary, indent=2)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
