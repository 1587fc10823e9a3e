"""Verdict quality on public safety benchmarks, measured through the nightly job itself.

    python -m pipelines.evaluate --sets all --limit 50 --seed 0 --out results/eval [job options...]

Converts the chosen sets (see `pipelines.evaluation.benchmark_sets`) to canonical logs in `OUT/input/<set>.parquet`,
runs `pipelines.job.moderate.run` once over all of them into `OUT/run` (one engine start), joins the verdicts of the
unit matching each set's level to the gold labels (`OUT/joined.parquet`) and writes `OUT/results.md`,
`OUT/results.json` and `OUT/f1.png`. Unknown options (`--engine`, `--model`, `--template`, `--verdict-mode`,
`--max-tokens`, `--reasoning-budget`, ...) go to the job unchanged; `--seed` picks the sample and is also
the job's sampling seed. `OUT/input` and `OUT/run` are rebuilt on every call unless `--resume` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import polars as pl

from pipelines.evaluation import benchmark_sets, scores
from pipelines.evaluation.report import plot_f1, render_markdown
from pipelines.job.moderate import run as run_job
from policies import DEFAULT_POLICY_DIR
from scripts.generate_sample_logs import write_canonical
from transforms.engines.protocol import EngineSpec

log = logging.getLogger("rsafe_batch.evaluate")
EVAL_POLICY_DIR = benchmark_sets.REPO_ROOT / "policies" / "eval"
EVAL_TENANTS_FILE = EVAL_POLICY_DIR / "tenants.yaml"
PARSED = ("safe", "unsafe")
GOLD_SCHEMA = {
    "conversation_id": pl.String,
    "set": pl.String,
    "level": pl.String,
    "index": pl.Int64,
    "label": pl.String,
}
VERDICT_COLUMNS = (
    "unit",
    "outcome",
    "verdict",
    "verdict_source",
    "p_unsafe",
    "trace_p_unsafe",
    "finish_reason",
    "completion_tokens",
    "truncated_input",
)
NOTES = (
    "Answers are the `outcome` column (the decision head's where one decided, else the model's own answer: "
    "safe/unsafe/parse_error/truncated), not `verdict` "
    "(the decision after the P(unsafe) threshold and the tenant's on_parse_error rule); "
    "'F1 (verdict)' counts the job's decision (`verdict` = unsafe; review and missing count as not flagged).",
    "P/R/F1/Acc count a parse_error, truncated or missing (dead-lettered) answer as wrong; "
    "'F1 (unparsed dropped)' leaves those items out, as the RSafe authors do.",
    "Rates are over the n sampled items. AUROC uses p_unsafe where present.",
    "Wall time is the whole job run; a set's share is split by its number of judged units "
    "(the eval tenants' policies judge only the unit each set is scored on).",
)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The harness's own options, and the rest (passed to the job)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.split("\n\n")[0])
    parser.allow_abbrev = False
    parser.add_argument(
        "--sets", default="all", help="all, rsafe, or comma-separated names: " + ",".join(benchmark_sets.SETS)
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="items per set, sampled deterministically (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sample seed (also the job's --seed)")
    parser.add_argument("--out", default="results/eval", help="output folder (local)")
    parser.add_argument("--benchmarks-dir", default=str(benchmark_sets.DEFAULT_BENCHMARKS_DIR))
    parser.add_argument("--resume", action="store_true", help="keep OUT/run: only judge units not yet published")
    args, job_args = parser.parse_known_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    for option in ("--input", "--output"):
        if any(a == option or a.startswith(option + "=") for a in job_args):
            parser.error(f"{option} is set by the harness")
    return args, job_args


def prepare_inputs(names: list[str], root: str, limit: int | None, seed: int, input_dir: Path) -> pl.DataFrame:
    """Write each set's conversations to `input_dir/<set>.parquet`; return the gold table."""
    gold: list[dict] = []
    for name in names:
        rows, labels = benchmark_sets.to_rows(name, benchmark_sets.load_set(name, root, limit, seed))
        write_canonical(rows, input_dir / f"{name}.parquet")
        gold += labels
    return pl.DataFrame(gold, schema=GOLD_SCHEMA)


def read_verdicts(run_dir: Path) -> pl.DataFrame | None:
    """Every verdict row published under `run_dir/verdicts` (None if there is none)."""
    files = sorted((run_dir / "verdicts").glob("tenant=*/date=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed") if files else None


def join_gold(gold: pl.DataFrame, verdicts: pl.DataFrame | None) -> pl.DataFrame:
    """Gold rows left-joined to the verdict of the unit matching their level (null columns: no verdict)."""
    if verdicts is None:
        return gold.with_columns(*(pl.lit(None).alias(c) for c in VERDICT_COLUMNS))
    matched = (
        verdicts.join(gold.select("conversation_id", "level"), on="conversation_id")
        .filter(pl.col("unit") == pl.col("level"))
        .drop("level")
    )
    if matched["conversation_id"].is_duplicated().any():
        raise RuntimeError("more than one verdict for a (conversation, unit): is OUT/run mixed with another run?")
    return gold.join(matched, on="conversation_id", how="left").sort("set", "index")


def _rate(count: int, n: int) -> float | None:
    return count / n if n else None


def set_metrics(rows: list[dict]) -> dict:
    """Metrics of one set from its joined rows (gold `label` + the verdict's `outcome`, ... or nulls)."""
    n = len(rows)
    gold = [r["label"] == "unsafe" for r in rows]
    outcomes = [r["outcome"] or "missing" for r in rows]
    # Strict: an unparsed or missing answer is the wrong one.
    strict = [o == "unsafe" if o in PARSED else not g for o, g in zip(outcomes, gold, strict=True)]
    c = scores.confusion(gold, strict)
    kept = [(g, o == "unsafe") for g, o in zip(gold, outcomes, strict=True) if o in PARSED]
    c_kept = scores.confusion([g for g, _ in kept], [p for _, p in kept])
    scored = [(g, r["p_unsafe"]) for g, r in zip(gold, rows, strict=True) if r["p_unsafe"] is not None]
    result = {
        "n": n,
        "unsafe": c.positives,
        "safe": c.negatives,
        "confusion": {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn},
        "precision": scores.precision(c),
        "recall": scores.recall(c),
        "f1": scores.f1(c),
        "accuracy": scores.accuracy(c),
        "f1_unparsed_dropped": scores.f1(c_kept),
        "f1_verdict": scores.f1(scores.confusion(gold, [r["verdict"] == "unsafe" for r in rows])),
        "n_unparsed_dropped": n - len(kept),
        "auroc": scores.auroc([g for g, _ in scored], [s for _, s in scored]),
        "auroc_n": len(scored),
        "ece": scores.expected_calibration_error([g for g, _ in scored], [s for _, s in scored]),
        "parse_error_rate": _rate(outcomes.count("parse_error"), n),
        "truncation_rate": _rate(outcomes.count("truncated"), n),
        "missing_rate": _rate(outcomes.count("missing"), n),
        "forced_rate": _rate(sum(r["verdict_source"] == "forced" for r in rows), n),
        "review_rate": _rate(sum(r["verdict"] == "review" for r in rows), n),
        "input_cut_rate": _rate(sum(bool(r["truncated_input"]) for r in rows), n),
        "mean_completion_tokens": scores.mean(
            [r["completion_tokens"] for r in rows if r["completion_tokens"] is not None]
        ),
    }
    result["undefined"] = _reasons(result, c, scored)
    return result


def free_view(rows: list[dict]) -> list[dict]:
    """An `auto` run's rows as `free` mode would have them: forced verdicts become the unparsed outcome.

    Exact under greedy decoding: `auto`'s first pass is `free` generation, and only units without a usable box
    were forced; in `free` those units end as `truncated` (hit the token limit) or `parse_error`, with no P(unsafe).
    """
    out = []
    for row in rows:
        if row["verdict_source"] == "forced":
            outcome = "truncated" if row["finish_reason"] == "length" else "parse_error"
            row = {**row, "outcome": outcome, "verdict_source": None, "p_unsafe": None}
        out.append(row)
    return out


def derives_free(judge_settings: dict) -> bool:
    """True when a run's verdicts also give `free` mode's exactly: `auto` mode with greedy decoding."""
    return judge_settings.get("verdict_mode") == "auto" and judge_settings.get("sampling", {}).get("temperature") == 0


def _reasons(result: dict, c: scores.Confusion, scored: list[tuple[bool, float]]) -> dict[str, str]:
    reasons = {}
    if result["precision"] is None:
        reasons["precision"] = "nothing predicted unsafe"
    if not c.positives:
        reasons["recall"] = reasons["f1"] = reasons["f1_verdict"] = "no unsafe item in the sample (all safe)"
    if result["f1_unparsed_dropped"] is None:
        reasons["f1_unparsed_dropped"] = "no unsafe item among the parsed answers"
    if result["auroc"] is None:
        classes = {g for g, _ in scored}
        reasons["auroc"] = "no p_unsafe" if not scored else f"one class only: {'unsafe' if True in classes else 'safe'}"
    return reasons


def evaluate(argv: list[str], engine_spec: EngineSpec | None = None) -> dict[str, dict]:
    """Run the whole evaluation; returns the per-set metrics (also written to OUT/results.json).

    `engine_spec` overrides the engine the options describe (tests pass the session's engine).
    """
    args, job_args = parse_args(argv)
    names = benchmark_sets.resolve_sets(args.sets)
    out = Path(args.out)
    input_dir, run_dir = out / "input", out / "run"
    for folder in (input_dir,) if args.resume else (input_dir, run_dir):
        shutil.rmtree(folder, ignore_errors=True)
    gold = prepare_inputs(names, args.benchmarks_dir, args.limit, args.seed, input_dir)
    gold.write_parquet(out / "gold.parquet")
    has_tenants = any(a.split("=")[0] == "--tenants" for a in job_args)
    job_argv = ["--input", str(input_dir / "*.parquet"), "--output", str(run_dir), "--seed", str(args.seed)]
    if not has_tenants:
        job_argv += ["--tenants", str(EVAL_TENANTS_FILE), "--policies", str(DEFAULT_POLICY_DIR)]
        job_argv += ["--policies", str(EVAL_POLICY_DIR)]
    job_argv += job_args
    log.info("evaluating %d set(s), %d items: moderate %s", len(names), gold.height, " ".join(job_argv))
    started = time.monotonic()
    manifest = run_job(job_argv, engine_spec=engine_spec)
    wall_s = time.monotonic() - started
    verdicts = read_verdicts(run_dir)
    joined = join_gold(gold, verdicts)
    joined.write_parquet(out / "joined.parquet")
    units = _units_per_set(gold, verdicts)
    total_units = sum(units.values())
    per_set = {}
    for name in names:
        rows = joined.filter(pl.col("set") == name).to_dicts()
        result = set_metrics(rows)
        if derives_free(manifest.judge_settings):
            result["free_from_auto"] = set_metrics(free_view(rows))
        spec = benchmark_sets.SETS[name]
        result |= {"level": spec.level, "source": spec.source, "labels": spec.labels, "units": units.get(name, 0)}
        result["wall_share_s"] = wall_s * units.get(name, 0) / total_units if total_units else None
        per_set[name] = result
    defined = [m["f1"] for m in per_set.values() if m["f1"] is not None]
    report = {
        "run": {
            "run_id": manifest.run_id,
            "model": manifest.model,
            "template_version": manifest.template_version,
            "job_argv": job_argv,
            "evaluate_argv": list(argv),
            "sets": names,
            "limit": args.limit,
            "seed": args.seed,
            "benchmarks_dir": str(args.benchmarks_dir),
            "wall_s": wall_s,
            "units": total_units,
            "dead_letters": manifest.error_counts,
            "resumed": args.resume,
        },
        "macro_f1": scores.mean(defined),
        "sets": per_set,
        "notes": list(NOTES),
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "results.md").write_text(render_markdown(report), encoding="utf-8")
    plot_f1(per_set, out / "f1.png")
    return per_set


def _units_per_set(gold: pl.DataFrame, verdicts: pl.DataFrame | None) -> dict[str, int]:
    if verdicts is None:
        return {}
    counted = verdicts.join(gold.select("conversation_id", "set"), on="conversation_id").group_by("set").len()
    return dict(zip(counted["set"], counted["len"], strict=True))


def main() -> None:
    """Command-line entry point: prints the Markdown report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:]
    evaluate(argv)
    print((Path(parse_args(argv)[0].out) / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
