"""Which model's activations make the better head: two `training head` runs' features, on the same rows.

    python benchmarks/head_base_compare.py --run base=runs/head-base-6000 --run stage1=runs/head-all [--out F.json]

Each RUN is a `python -m training head` folder (`--stop-after features` is enough) whose features were read from
a different model (`--model embedded:base`, `embedded:lora`). Rows are matched by their rendered prompt, so only
rows both runs extracted count (a run stopped early contributes the chunks it saved); the runs' split is kept (a
hash of the text, the same in both), or, when a stopped run has too few validation rows (they come last), a seeded
20 % of the common rows is held out, the same for every run. On those rows the same head is fitted for each run, the
`concat` read-out and each single read-out, with C chosen on the validation rows, and the validation AUROC is
printed side by side. The issue's rule: the embedded guard's base is whichever validates better.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import named_folders
from training.head_data import read_records
from training.head_fit import C_GRID, CONCAT, FINAL, candidate_features, fit_scaled, scores_report
from transforms.engines.decision_head import norm_weight

MIN_VALIDATION_ROWS = 200
FALLBACK_SHARE = 0.2


def saved_features(run: Path) -> np.ndarray:
    """The run's features: `features.npy`, or the chunks saved so far (in row order) for a stopped extraction."""
    if (run / "features" / "features.npy").is_file():
        return np.load(run / "features" / "features.npy")
    chunks = []
    while (run / "features" / f"chunk-{len(chunks)}.npy").is_file():
        chunks.append(np.load(run / "features" / f"chunk-{len(chunks)}.npy"))
    if not chunks:
        raise SystemExit(f"{run} has no extracted features")
    return np.concatenate(chunks)


def compare(
    runs: dict[str, Path], read_outs: tuple[str, ...] = (CONCAT, FINAL), min_validation: int = MIN_VALIDATION_ROWS
) -> dict:
    """Validation AUROC per run and read-out, on the rows every run extracted."""
    loaded = {}
    for name, run in runs.items():
        records = read_records(run)
        features = saved_features(run)
        config = json.loads((run / "training.json").read_text())["config"] if (run / "training.json").is_file() else {}
        layers = config.get("layers") or json.loads((run / "features" / "extraction.json").read_text())["layers"]
        candidates = candidate_features(features, layers, norm_weight(config["model_dir"]))
        index = {r["user_message"]: i for i, r in enumerate(records[: len(features)])}
        loaded[name] = (records, candidates, index, config["model_dir"])
    common = sorted(set.intersection(*(set(index) for _, _, index, _ in loaded.values())))
    first = next(iter(loaded.values()))
    rows_of = {m: first[0][first[2][m]] for m in common}
    y = np.array([rows_of[m]["label"] == "unsafe" for m in common], dtype=int)
    train = np.array([rows_of[m]["split"] == "train" for m in common])
    held_out = "the runs' validation split"
    if (~train).sum() < min_validation:  # a run stopped before its validation rows (they come last)
        train = np.random.default_rng(0).random(len(common)) >= FALLBACK_SHARE
        held_out = f"a seeded {FALLBACK_SHARE:.0%} of the common training rows (too few validation rows in common)"
    figures: dict = {"rows": len(common), "train": int(train.sum()), "validation": int((~train).sum()),
                     "held_out": held_out, "runs": {}}  # fmt: skip
    for name, (_, candidates, index, model_dir) in loaded.items():
        at = [index[m] for m in common]
        figures["runs"][name] = {"model_dir": model_dir}
        for read_out in read_outs:
            X = candidates[read_out][at]
            best = max(
                (scores_report(y[~train], X[~train] @ fit_scaled(X[train], y[train], C)[0])["auroc"], C) for C in C_GRID
            )
            figures["runs"][name][read_out] = {"validation_auroc": best[0], "C": best[1]}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=FOLDER of a head run; two or more")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    runs = named_folders(parser, args.run, "--run", at_least=2)
    figures = compare(runs)
    print(f"{figures['rows']} rows in common: {figures['train']} fitted, {figures['validation']} held out "
          f"({figures['held_out']})")  # fmt: skip
    for name, result in figures["runs"].items():
        scored = {k: v for k, v in result.items() if k != "model_dir"}
        cells = ", ".join(f"{k} {v['validation_auroc']:.4f} (C={v['C']:g})" for k, v in scored.items())
        print(f"  {name:10s} {cells}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
