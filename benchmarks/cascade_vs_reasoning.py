"""The cascade against full reasoning on the same items, and what calibration does on held-out items.

    python -m pipelines.evaluate_modes --modes auto,cascade --sets all --limit 50 --seed 0 \
        --out results/eval-cascade --max-tokens 128
    python benchmarks/cascade_vs_reasoning.py results/eval-cascade --out benchmarks/results/cascade.json

Reads the two modes' evaluations (OUT/auto, OUT/cascade: `joined.parquet` = verdicts joined with gold labels,
`results.json` = metrics and wall time) and prints, per set: F1 of auto, free (derived exactly from greedy auto)
and cascade; AUROC of auto's P(unsafe) and of the cascade's pass-1 score; the share of units the cascade sent to
reasoning; and per mode the job's units/s end to end. Then calibration (`pipelines.evaluation.calibrate`,
per-set temperature, global fallback) in two folds: fitted on one half of each set's items (by a stable hash of
the item id) and scored on the other half, so every ECE reported is on items the fit did not see.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load, machine, now
from pipelines.evaluation import calibrate, scores


def _fold(item_id: str) -> int:
    return hashlib.sha256(item_id.encode()).digest()[0] % 2


def _rows(folder: Path) -> pl.DataFrame:
    """Joined rows, with `pass1_p`: the cascade's reasoning-free score of every unit (on rows it or a decision head
    decided, their `p_unsafe`; on rows it sent to reasoning without a head, `score_p_unsafe`)."""
    rows = pl.read_parquet(folder / "joined.parquet")
    scored = pl.col("verdict_source").is_in(["score", "head"])
    return rows.with_columns(pass1_p=pl.when(scored).then(pl.col("p_unsafe")).otherwise(pl.col("score_p_unsafe")))


def _wall_s(folder: Path) -> float:
    return json.loads((folder / "results.json").read_text())["run"]["wall_s"]


def _auroc(rows: pl.DataFrame, column: str) -> float | None:
    scored = rows.drop_nulls(column)
    return scores.auroc((scored["label"] == "unsafe").to_list(), scored[column].to_list())


def held_out_calibration(rows: pl.DataFrame, column: str) -> dict:
    """Two-fold ECE before/after a per-set temperature fitted on the other fold (min 10 labels per set)."""
    points = (
        rows.drop_nulls(column)
        .select(tenant_id="set", p_unsafe=column, label="label", fold=pl.col("conversation_id").map_elements(_fold))
        .with_columns(y=(pl.col("label") == "unsafe").cast(pl.Int8), p_unsafe=pl.col("p_unsafe").clip(1e-6, 1 - 1e-6))
    )
    scored = []
    for fold in (0, 1):
        calibration, _ = calibrate.fit(points.filter(pl.col("fold") != fold), min_labels=10)
        held = points.filter(pl.col("fold") == fold)
        cal = [calibration.apply(t, p) for t, p in zip(held["tenant_id"], held["p_unsafe"], strict=True)]
        scored.append(held.with_columns(p_calibrated=pl.Series(cal)))
    held = pl.concat(scored)
    per_set = {
        name: {
            "n": part.height,
            "ece_before": scores.expected_calibration_error(part["y"].to_list(), part["p_unsafe"].to_list()),
            "ece_after": scores.expected_calibration_error(part["y"].to_list(), part["p_calibrated"].to_list()),
        }
        for (name,), part in held.group_by("tenant_id", maintain_order=True)
    }
    y = held["y"].to_list()
    ece_mean = {k: scores.mean([v[k] for v in per_set.values()]) for k in ("ece_before", "ece_after")}
    overall = {
        "n": held.height,
        "ece_before": scores.expected_calibration_error(y, held["p_unsafe"].to_list()),
        "ece_after": scores.expected_calibration_error(y, held["p_calibrated"].to_list()),
    }
    return {"overall": overall, "sets": per_set, "set_mean": ece_mean}


def compare(out: Path) -> dict:
    auto_dir, cascade_dir = out / "auto", out / "cascade"
    auto, cascade = _rows(auto_dir), _rows(cascade_dir)
    auto_metrics = json.loads((auto_dir / "results.json").read_text())["sets"]
    cascade_metrics = json.loads((cascade_dir / "results.json").read_text())["sets"]
    sets = {}
    for name in auto_metrics:
        c_rows = cascade.filter(pl.col("set") == name)
        reasoned = c_rows.filter(pl.col("finish_reason") != "score").height
        unsafe, n = auto_metrics[name]["unsafe"], auto_metrics[name]["n"]
        sets[name] = {
            "n": n,
            "f1_flag_all": 2 * unsafe / (unsafe + n) if unsafe else None,
            "f1_auto": auto_metrics[name]["f1"],
            "f1_free": auto_metrics[name]["free_from_auto"]["f1"],
            "f1_cascade": cascade_metrics[name]["f1"],
            "auroc_auto": auto_metrics[name]["auroc"],
            "auroc_cascade": cascade_metrics[name]["auroc"],
            "auroc_score_pass": _auroc(c_rows, "pass1_p"),
            "reasoned_share": reasoned / c_rows.height if c_rows.height else None,
            "completion_tokens_auto": auto.filter(pl.col("set") == name)["completion_tokens"].sum(),
            "completion_tokens_cascade": c_rows["completion_tokens"].sum(),
        }
    walls = {"auto": _wall_s(auto_dir), "cascade": _wall_s(cascade_dir)}
    units = {"auto": auto.height, "cascade": cascade.height}

    def mean_of(key: str) -> float | None:
        return scores.mean([s[key] for s in sets.values() if s[key] is not None])

    return {
        "when": now(),
        "machine": machine(),
        "load_at_report": load(),
        "sets": sets,
        "means": {k: mean_of(k) for k in MEANS},
        "reasoned_share_overall": cascade.filter(pl.col("finish_reason") != "score").height / cascade.height,
        "wall_s": walls,
        "units_per_s": {m: units[m] / walls[m] for m in walls},
        "speedup_cascade_vs_auto": walls["auto"] / walls["cascade"] * units["cascade"] / units["auto"],
        "calibration_auto_p": held_out_calibration(auto, "p_unsafe"),
        "calibration_score_pass_p": held_out_calibration(cascade, "pass1_p"),
    }


MEANS = ("f1_flag_all", "f1_auto", "f1_free", "f1_cascade", "auroc_auto", "auroc_score_pass")


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render(result: dict) -> str:
    keys = ["n", "f1_flag_all", "f1_auto", "f1_free", "f1_cascade", "auroc_auto", "auroc_score_pass", "reasoned_share"]
    lines = ["| set | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in result["sets"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[k]) for k in keys) + " |")
    means = [_cell(result["means"][k]) for k in MEANS]
    lines.append("| **mean** | | " + " | ".join([*means, _cell(result["reasoned_share_overall"])]) + " |")
    ups = result["units_per_s"]
    lines += [
        "",
        f"units/s end to end: auto {ups['auto']:.3f} ({result['wall_s']['auto']:.0f} s), cascade "
        f"{ups['cascade']:.3f} ({result['wall_s']['cascade']:.0f} s); cascade / auto = "
        f"{result['speedup_cascade_vs_auto']:.2f}x (free = auto's first pass: same cost as auto here)",
        "",
        "| held-out calibration (2 folds) | n | ECE before (pooled) | after (pooled) | per-set mean before | after |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (("auto P(unsafe)", "calibration_auto_p"), ("score pass P(unsafe)", "calibration_score_pass_p")):
        o, per_set = result[key]["overall"], result[key]["set_mean"]
        lines.append(
            f"| {label} | {o['n']} | {o['ece_before']:.3f} | {o['ece_after']:.3f} | "
            f"{per_set['ece_before']:.3f} | {per_set['ece_after']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_out", help="an evaluate_modes output with auto/ and cascade/")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    result = compare(Path(args.eval_out))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
