"""Decision heads side by side on one head run's held-out rows: which head ranks them better.

    python benchmarks/head_compare.py --run runs/head-all \\
        --head shipped=transforms/engines/embedded_guard/head --head new=runs/head-all/head [--out FILE.json]

RUN is a `python -m training head` folder with its features extracted (`records.jsonl`, `features/features.npy`).
Each HEAD (a saved head folder: `head.json` + `head.safetensors`) is applied at its own read-outs (the final
normed state, or the layers it was fitted on) to the run's validation rows. The split is a hash of the text with
the run's seed and share, so with the same seed and share no head fitted by `training head` has seen these rows,
whatever its `--max-rows`. Prints AUROC, F1 at 0.5, log loss and ECE over all rows, by level and by source (and
the mean over sources, where DiaSafety's many rows do not dominate), and writes them as JSON with `--out`.
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
from training.head_fit import by_group, head_log_odds, scores_report, source_name
from transforms.engines.decision_head import HEAD_CONFIG, final_layer, norm_weight


def head_scores(head_dir: Path, features: np.ndarray, layers: list[int], gamma: np.ndarray, last: int) -> np.ndarray:
    """The head's log-odds for every row of the run, read at the head's own read-out layers."""
    try:
        return head_log_odds(head_dir, features, layers, gamma, last)
    except ValueError as exc:
        raise SystemExit(f"{head_dir}: {exc}") from None


def compare(run: Path, heads: dict[str, Path]) -> dict:
    """Per head: figures on the run's validation rows, overall, by level and by source."""
    records = read_records(run)
    features = np.load(run / "features" / "features.npy")
    training = json.loads((run / "training.json").read_text())["config"]
    layers, model_dir = training["layers"], training["model_dir"]
    gamma = norm_weight(model_dir)
    val = np.array([r["split"] == "validation" for r in records])
    validation = [r for r, v in zip(records, val, strict=True) if v]
    y = np.array([r["label"] == "unsafe" for r in validation], dtype=int)
    figures = {}
    for name, head_dir in heads.items():
        z = head_scores(head_dir, features, layers, gamma, final_layer(model_dir))[val]
        sources = by_group(validation, y, z, source_name)
        per_source = [s["auroc"] for s in sources.values() if s["auroc"] is not None]
        figures[name] = {
            "head": str(head_dir),
            "validation": scores_report(y, z),
            "mean_auroc_over_sources": float(np.mean(per_source)),
            "by_level": by_group(validation, y, z, "level"),
            "by_source": sources,
        }
    return {"run": str(run), "validation_rows": int(val.sum()), "heads": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a training head run with extracted features")
    parser.add_argument("--head", action="append", required=True, help="NAME=FOLDER of a saved head; repeatable")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    needed = (args.run / "records.jsonl", args.run / "training.json", args.run / "features" / "features.npy")
    if missing := [path for path in needed if not path.is_file()]:
        parser.error(f"--run {args.run} is not a head run with extracted features: {missing[0]} is missing")
    heads = named_folders(parser, args.head, "--head", HEAD_CONFIG, "a saved head")
    result = compare(args.run, heads)
    for name, figures in result["heads"].items():
        v = figures["validation"]
        print(f"{name}: AUROC {v['auroc']:.3f}  F1 {v['f1']:.3f}  log loss {v['log_loss']:.3f}  ECE {v['ece']:.3f}"
              f"  mean AUROC over sources {figures['mean_auroc_over_sources']:.3f}  ({v['n']} rows)")  # fmt: skip
        for group in ("by_level", "by_source"):
            print("   ", ", ".join(f"{k} {s['auroc']:.3f}" for k, s in figures[group].items() if s["auroc"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
