"""Evaluation runs side by side on the items they all reached: F1, AUROC, accuracy and own-box rate per set.

    python -m pipelines.compare_evaluations base=results/eval-base/auto guard=results/eval-100/auto \
        [--view auto,free] [--out results/compare.md]

Each NAME=DIR is a `pipelines.evaluation.evaluate` output folder. Its rows are rebuilt from what the run published
(`DIR/gold.parquet` joined to `DIR/run/verdicts`), so a run that was stopped, or one resumed with a larger
`--limit`, is compared on the items it reached; a folder without `run/` is read from its `joined.parquet`. Only
items with an answer in every run count, so the runs are scored on exactly the same items. `free` is derived
from greedy `auto` runs (`pipelines.evaluation.evaluate.free_view`): forced verdicts become unparsed answers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pipelines.evaluation.evaluate import free_view, join_gold, read_verdicts, set_metrics
from pipelines.evaluation.scores import mean

VIEWS = ("auto", "free")
FIGURES = (("F1", "f1"), ("AUROC", "auroc"), ("accuracy", "accuracy"), ("own box", "own_box"))


def read_run(folder: Path) -> pl.DataFrame:
    """One evaluation's gold rows joined to the verdicts it published (null verdict columns: not reached)."""
    gold_path = folder / "gold.parquet"
    if (folder / "run").is_dir():
        if not gold_path.exists():
            raise FileNotFoundError(f"{folder}: no gold.parquet beside run/: not a pipelines.evaluate folder")
        return join_gold(pl.read_parquet(gold_path), read_verdicts(folder / "run"))
    if not (folder / "joined.parquet").exists():
        raise FileNotFoundError(f"{folder}: neither run/ nor joined.parquet: not a pipelines.evaluate folder")
    return pl.read_parquet(folder / "joined.parquet")


def shared_items(runs: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """`conversation_id, set` of the items every run answered (a verdict with an outcome)."""
    shared = None
    for frame in runs.values():
        answered = frame.filter(pl.col("outcome").is_not_null()).select("conversation_id", "set")
        shared = answered if shared is None else shared.join(answered, on=["conversation_id", "set"])
    return shared if shared is not None else pl.DataFrame(schema={"conversation_id": pl.String, "set": pl.String})


def _figures(rows: list[dict]) -> dict:
    result = set_metrics(rows)
    result["own_box"] = sum(r["verdict_source"] == "model" for r in rows) / len(rows) if rows else None
    return result


def compare(runs: Mapping[str, pl.DataFrame], view: str = "auto") -> dict[str, dict[str, dict]]:
    """{set: {run name: metrics}} on the shared items, sets in name order; `view` "free" scores `free_view`."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    shared = shared_items(runs)
    table: dict[str, dict[str, dict]] = {}
    for name in sorted(set(shared["set"])):
        ids = shared.filter(pl.col("set") == name).select("conversation_id")
        table[name] = {}
        for run_name, frame in runs.items():
            rows = frame.join(ids, on="conversation_id").sort("conversation_id").to_dicts()
            table[name][run_name] = _figures(free_view(rows) if view == "free" else rows)
    return table


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if key == "own_box" else f"{value:.3f}"


def render(table: Mapping[str, Mapping[str, dict]], names: Sequence[str], view: str) -> str:
    """Markdown: one row per set and a row of means over the sets where a figure is defined."""
    header = ["set", "n"] + [f"{label} {name}" for label, _ in FIGURES for name in names]
    lines = [f"View `{view}`, items answered by every run.", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    for set_name, per_run in table.items():
        n = next(iter(per_run.values()))["n"]
        cells = [_cell(per_run[name][key], key) for _, key in FIGURES for name in names]
        lines.append("| " + " | ".join([set_name, str(n), *cells]) + " |")
    means = [
        _cell(mean([m[name][key] for m in table.values() if m[name][key] is not None]), key)
        for _, key in FIGURES
        for name in names
    ]
    total = sum(next(iter(m.values()))["n"] for m in table.values())
    lines.append("| " + " | ".join(["**mean**", str(total), *means]) + " |")
    return "\n".join(lines) + "\n"


def parse_runs(specs: Sequence[str]) -> dict[str, Path]:
    """`NAME=DIR` arguments → {name: folder}, names unique."""
    runs: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"{spec!r}: expected NAME=DIR (e.g. base=results/eval-base/auto)")
        if name in runs:
            raise ValueError(f"run name {name!r} given twice")
        runs[name] = Path(folder)
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR", help="pipelines.evaluate output folders")
    parser.add_argument("--view", default="auto,free", help="comma-separated: auto, free (default: both)")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    views = [v.strip() for v in args.view.split(",") if v.strip()]
    try:
        folders = parse_runs(args.runs)
        if not views or set(views) - set(VIEWS):
            raise ValueError(f"--view must be from {VIEWS}, got {args.view!r}")
        runs = {name: read_run(folder) for name, folder in folders.items()}
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    text = "\n".join(render(compare(runs, view), list(runs), view) for view in views)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
