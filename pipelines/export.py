"""Verdicts in the shape other moderation consumers speak: the OpenAI Moderation API's result objects.

    python -m pipelines.export --format openai-moderation OUT --to moderation.jsonl [--tenant T]...
        [--since DAY] [--until DAY] [--policies PATH]... [--include-review]

One record per verdict row (JSONL, or Parquet when `--to` ends in `.parquet`):

    {"id": <resume_key>, "model": ..., "results": [{"flagged", "categories", "category_scores"}],
     plus the audit ids: conversation_id, tenant_id, unit, turn_index,
     verdict, outcome, policy_id, policy_version, run_id, processed_at}

`flagged` is the verdict `unsafe` (a `review` verdict is not flagged unless `--include-review`). `categories`
has every Moderation API category name; one is true only when the row is flagged and a policy code maps onto it
through the policy's `moderation_api_categories` that the guard named (the `rsafe-categories` template) or that
a category head scored at or above 0.5. `category_scores` holds what the guard measures: P(unsafe) overall under
the key `unsafe`, and per API category the highest category-head score among the policy codes mapped onto it
(the embedded guard's heads, `category_scores` in the verdicts); a category no scored code maps onto is null,
absent rather than invented (codes the tenant redefined have no mapping, so their default heads are not used).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pipelines.report_queries import CATEGORY_SCORE_CUT, scan_output
from policies import DEFAULT_POLICY_DIR, load_policies
from policies.model import MODERATION_API_CATEGORIES

AUDIT_COLUMNS = (
    "conversation_id", "tenant_id", "unit", "turn_index", "verdict", "outcome", "policy_id", "policy_version",
    "run_id", "processed_at",
)  # fmt: skip
SCORE_ENTRY = pl.Struct({"code": pl.String, "score": pl.Float64})  # one `category_scores` entry of a verdict row


def code_mappings(policy_paths: Sequence[str] = (str(DEFAULT_POLICY_DIR),)) -> dict[str, dict[str, list[str]]]:
    """policy id → {code → Moderation API names}, from the policies (shipped, or `--policies`)."""
    policies = load_policies(list(policy_paths))
    return {pid: {c: list(n) for c, n in (p.moderation_api_categories or {}).items()} for pid, p in policies.items()}


def to_openai_moderation(
    verdicts: pl.LazyFrame, mappings: Mapping[str, Mapping[str, Sequence[str]]], include_review: bool = False
) -> pl.LazyFrame:
    """Verdict rows → one OpenAI-Moderation-shaped record per row (see the module docstring)."""
    pairs = [
        (pid, code, name) for pid, by_code in mappings.items() for code, names in by_code.items() for name in names
    ]
    mapping = pl.DataFrame(pairs, schema=["policy_id", "code", "name"], orient="row").lazy()
    flagged = pl.col("verdict") == "unsafe"
    if include_review:
        flagged = flagged | (pl.col("verdict") == "review")
    if "category_scores" not in verdicts.collect_schema().names():  # verdicts of a guard without category heads
        verdicts = verdicts.with_columns(category_scores=pl.lit(None, pl.List(SCORE_ENTRY)))
    base = verdicts.with_row_index("_row").with_columns(flagged=flagged)
    scored = (
        base.select("_row", "policy_id", entry=pl.col("category_scores"))
        .explode("entry")
        .drop_nulls("entry")
        .unnest("entry")
        .join(mapping, on=["policy_id", "code"], how="inner")
    )
    per_name = scored.group_by("_row").agg(
        pl.col("score").filter(pl.col("name") == n).max().alias(_score_column(n)) for n in MODERATION_API_CATEGORIES
    )
    named = (
        base.select("_row", "policy_id", code=pl.col("categories").cast(pl.List(pl.String)))
        .explode("code")
        .join(mapping, on=["policy_id", "code"], how="inner")
        .select("_row", "name")
    )
    over_cut = scored.filter(pl.col("score") >= CATEGORY_SCORE_CUT).select("_row", "name")
    names = pl.concat([named, over_cut]).group_by("_row").agg(pl.col("name").unique())
    with_names = (
        base.join(names, on="_row", how="left")
        .join(per_name, on="_row", how="left")
        .with_columns(pl.when(pl.col("flagged")).then(pl.col("name").fill_null([])).otherwise(pl.lit([], pl.List(str))))
    )
    categories = pl.struct(*[pl.col("name").list.contains(n).alias(n) for n in MODERATION_API_CATEGORIES])
    scores = pl.struct(
        pl.col("p_unsafe").alias("unsafe"), *[pl.col(_score_column(n)).alias(n) for n in MODERATION_API_CATEGORIES]
    )
    result = pl.struct(pl.col("flagged"), categories.alias("categories"), scores.alias("category_scores"))
    return with_names.sort("_row").select(
        pl.col("resume_key").alias("id"),
        "model",
        pl.concat_list(result).alias("results"),
        *AUDIT_COLUMNS,
    )


def _score_column(name: str) -> str:
    return f"_score:{name}"


def write_records(records: pl.DataFrame, to: str) -> None:
    """JSONL (one result object per line), or Parquet for a `.parquet` target."""
    if to.endswith(".parquet"):
        records.write_parquet(to)
        return
    with open(to, "w", encoding="utf-8") if to != "-" else sys.stdout as handle:
        for row in records.iter_rows(named=True):
            handle.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The export command's options."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.export", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the job's output folder (OUT)")
    parser.add_argument("--format", required=True, choices=["openai-moderation"])
    parser.add_argument("--to", required=True, help="target file: .jsonl (or - for stdout) or .parquet")
    parser.add_argument("--tenant", action="append", default=[], help="only these tenants (repeatable)")
    parser.add_argument("--since", help="only verdicts of conversations from this UTC day on (YYYY-MM-DD)")
    parser.add_argument("--until", help="only up to this UTC day (YYYY-MM-DD)")
    parser.add_argument("--policies", action="append", help="policy files/folders with the code mappings")
    parser.add_argument("--include-review", action="store_true", help="count `review` verdicts as flagged")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not list(Path(args.output).glob("verdicts/**/*.parquet")) and "://" not in args.output:
        parser.error(f"{args.output}: no verdict files under verdicts/ (is it the job's output folder?)")
    frame = scan_output(args.output, args.since, args.until).verdicts
    if args.tenant:
        frame = frame.filter(pl.col("tenant_id").is_in(args.tenant))
    mappings = code_mappings(args.policies or [str(DEFAULT_POLICY_DIR)])
    records = to_openai_moderation(frame, mappings, args.include_review).collect()
    write_records(records, args.to)
    print(f"{records.height} record(s) → {args.to}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
