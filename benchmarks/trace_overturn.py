"""May a trace overturn the decision head? Measured on a head cascade's benchmark run, against the gold labels.

    python benchmarks/trace_overturn.py results/eval-modes/cascade [--out docs/evaluation/trace-overturn.json]

FOLDER is a `pipelines.evaluation.evaluate` output of `--verdict-mode cascade` with a decision head (its
`joined.parquet`: gold labels beside the verdicts). Traced units are those with a `trace_p_unsafe` (the head
flagged them or they fell in the band). For them it compares the head's verdict (P(unsafe) >= 0.5) with the
trace's own box (`trace_p_unsafe` >= 0.5): accuracy, AUROC and the disagreements, and over every unit the F1 of the
two policies "the head decides" (what the job does) and "the trace overturns the head where they disagree". Prints
the figures and writes them as JSON with `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.evaluation import scores


def overturn_figures(joined: pl.DataFrame) -> dict:
    """The figures above from joined rows (`label`, `p_unsafe`, `trace_p_unsafe`, `set`)."""
    rows = joined.filter(pl.col("p_unsafe").is_not_null())
    gold = [label == "unsafe" for label in rows["label"]]
    head = [p >= 0.5 for p in rows["p_unsafe"]]
    trace_p = rows["trace_p_unsafe"].to_list()
    overturned = [h if t is None else t >= 0.5 for h, t in zip(head, trace_p, strict=True)]
    traced = [i for i, t in enumerate(trace_p) if t is not None]
    traced_gold = [gold[i] for i in traced]
    head_traced = [head[i] for i in traced]
    trace_traced = [trace_p[i] >= 0.5 for i in traced]
    disagree = [i for i, h, t in zip(traced, head_traced, trace_traced, strict=True) if h != t]
    return {
        "units": len(gold),
        "traced": len(traced),
        "traced_accuracy_head": scores.accuracy(scores.confusion(traced_gold, head_traced)),
        "traced_accuracy_trace": scores.accuracy(scores.confusion(traced_gold, trace_traced)),
        "traced_auroc_head": scores.auroc(traced_gold, [rows["p_unsafe"][i] for i in traced]),
        "traced_auroc_trace": scores.auroc(traced_gold, [trace_p[i] for i in traced]),
        "disagreements": len(disagree),
        "disagreements_trace_right": sum(overturned[i] == gold[i] for i in disagree),
        "f1_head_decides": scores.f1(scores.confusion(gold, head)),
        "f1_trace_overturns": scores.f1(scores.confusion(gold, overturned)),
        "sets": sorted(set(rows["set"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a pipelines.evaluate output of a head cascade")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    path = args.folder / "joined.parquet"
    if not path.is_file():
        parser.error(f"{path}: not found (is {args.folder} a pipelines.evaluate output?)")
    figures = overturn_figures(pl.read_parquet(path))
    if not figures["traced"]:
        parser.error(f"{args.folder}: no traced unit (not a decision-head cascade run?)")
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
