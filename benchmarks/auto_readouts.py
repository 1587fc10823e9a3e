"""Two `auto` runs of the same items that differ only in who reads P(unsafe) at the guard's box: what each verdict is.

    python benchmarks/auto_readouts.py head=results/eval-200/head-concat-auto lora=results/eval-200/lora-auto \\
        [--out docs/evaluation/auto-readouts-200.json]

Each FOLDER is a `pipelines.evaluation.evaluate` output of `--verdict-mode auto` (its `joined.parquet`). The
harness's F1 counts `outcome` (the answer the guard wrote in its box); the job's `verdict` is P(unsafe) read at that
box against the threshold. With a decision head the two can part: the head reads the box after the reasoning, a
position it was not trained at. Per run: units flagged by outcome and by verdict, the per-set F1 of the verdict and
its mean (over the sets where it is defined, as the harness's); between the runs: identical raw outputs and equal
outcomes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import named_folders
from pipelines.evaluation import scores

KEY = ("conversation_id", "unit")


def verdict_figures(joined: pl.DataFrame) -> dict:
    """Flag counts and the verdict's F1 per set (and their mean) from joined rows (`set`, `label`, `verdict`,
    `outcome`); a missing or `review` verdict counts as not flagged."""
    per_set = {}
    for name in joined["set"].unique(maintain_order=True):
        rows = joined.filter(pl.col("set") == name)
        gold = [label == "unsafe" for label in rows["label"]]
        flagged = [verdict == "unsafe" for verdict in rows["verdict"]]
        per_set[name] = scores.f1(scores.confusion(gold, flagged))  # None: the set holds no unsafe item
    return {
        "units": joined.height,
        "outcome_unsafe": joined.filter(pl.col("outcome") == "unsafe").height,
        "verdict_unsafe": joined.filter(pl.col("verdict") == "unsafe").height,
        "verdict_f1": per_set,
        "verdict_f1_mean": scores.mean([f1 for f1 in per_set.values() if f1 is not None]),
    }


def agreement(first: pl.DataFrame, second: pl.DataFrame) -> dict:
    """Units of both runs, and how many have the same raw output and the same outcome."""
    both = first.select(*KEY, "raw_output", "outcome").join(
        second.select(*KEY, "raw_output", "outcome"), on=list(KEY), suffix="_2"
    )
    return {
        "units": both.height,
        "same_raw_output": both.filter(pl.col("raw_output") == pl.col("raw_output_2")).height,
        "same_outcome": both.filter(pl.col("outcome") == pl.col("outcome_2")).height,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs=2, metavar="NAME=FOLDER")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    folders = named_folders(parser, args.runs, "a run", "joined.parquet", "a `pipelines.evaluate` output")
    runs = {name: pl.read_parquet(folder / "joined.parquet") for name, folder in folders.items()}
    (first, second) = runs.values()
    figures = {name: verdict_figures(joined) for name, joined in runs.items()}
    figures["agreement"] = agreement(first, second)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
