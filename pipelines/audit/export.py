"""Verdicts in the shape other moderation consumers speak: the OpenAI Moderation API's result objects.

    python -m pipelines.export --format openai-moderation OUT --to moderation.jsonl [--tenant T]...
        [--since DAY] [--until DAY] [--policies PATH]... [--include-review]

One record per verdict row, a `ModerationCreateResponse` that `openai.types.ModerationCreateResponse.model_validate`
accepts (the tests use the SDK as the oracle). The file format follows `--to`: `.jsonl` (or `-`, stdout) or
`.parquet`; any other suffix is refused.

    {"id": "modr-<resume_key>", "model": ..., "results": [{"flagged", "categories", "category_scores",
     "category_applied_input_types"}], plus the audit fields: resume_key, p_unsafe, category_map_version,
     scored_categories, conversation_id, tenant_id, unit, turn_index, verdict, outcome, policy_id, policy_version,
     run_id, processed_at}

`flagged` is the verdict `unsafe` (a `review` verdict is not flagged unless `--include-review`). The category keys
are the API's 13; policy codes map onto them by the policy's `moderation_api_categories` table (the shipped one is
in `policies/definitions/default.yaml`; `category_map_version` is the content hash of the table used, per policy).
A category is true only when the row is flagged and a mapped code was named by the guard (the `rsafe-categories`
template) or scored at or above 0.5 by a category head. Every `category_scores` value is a number:

- measured: the highest category-head score among the codes mapped onto it (the embedded guard's heads, the
  verdicts' `category_scores`); these API names are listed in `scored_categories`;
- otherwise, a flagged category: the row's P(unsafe) (1.0 when the verdict has no P), the guard's only measure;
- otherwise 0.0: not flagged and not measured.

Codes a tenant redefined have no mapping, so their default heads' scores are not used. `category_applied_input_types`
is `["text"]` for every category (the guard reads text only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pipelines.audit.cli import (
    AuditParser,
    MissingInputError,
    check_day_range,
    check_target,
    require_tenants,
    require_verdicts,
    run_politely,
    utc_day,
)
from pipelines.audit.report_queries import CATEGORY_SCORE_CUT, scan_output
from policies import DEFAULT_POLICY_DIR, load_policies
from policies.model import MODERATION_API_CATEGORIES, content_version

AUDIT_COLUMNS = (
    "resume_key", "p_unsafe", "category_map_version", "scored_categories", "conversation_id", "tenant_id", "unit",
    "turn_index", "verdict", "outcome", "policy_id", "policy_version", "run_id", "processed_at",
)  # fmt: skip
SCORE_ENTRY = pl.Struct({"code": pl.String, "score": pl.Float64})  # one `category_scores` entry of a verdict row
TARGET_SUFFIXES = (".jsonl", ".parquet")  # and `-` for stdout (JSONL)


def code_mappings(policy_paths: Sequence[str] = (str(DEFAULT_POLICY_DIR),)) -> dict[str, dict[str, list[str]]]:
    """policy id → {code → Moderation API names}, from the policies (shipped, or `--policies`)."""
    policies = load_policies(list(policy_paths))
    return {pid: {c: list(n) for c, n in (p.moderation_api_categories or {}).items()} for pid, p in policies.items()}


def mapping_versions(mappings: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, str]:
    """policy id → content hash of its code → API-name table (the export's `category_map_version`)."""
    return {pid: content_version({c: list(n) for c, n in by_code.items()}) for pid, by_code in mappings.items()}


def to_openai_moderation(
    verdicts: pl.LazyFrame, mappings: Mapping[str, Mapping[str, Sequence[str]]], include_review: bool = False
) -> pl.LazyFrame:
    """Verdict rows → one `ModerationCreateResponse`-shaped record per row (see the module docstring)."""
    pairs = [
        (pid, code, name) for pid, by_code in mappings.items() for code, names in by_code.items() for name in names
    ]
    mapping = pl.DataFrame(pairs, schema=["policy_id", "code", "name"], orient="row").lazy()
    versions = pl.DataFrame(list(mapping_versions(mappings).items()), schema=["policy_id", "category_map_version"],
                            orient="row").lazy()  # fmt: skip
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
        .join(versions, on="policy_id", how="left")
        .with_columns(pl.when(pl.col("flagged")).then(pl.col("name").fill_null([])).otherwise(pl.lit([], pl.List(str))))
    )
    fallback = pl.col("p_unsafe").fill_null(1.0)  # a flagged category no head measured: the guard's P(unsafe)

    def score(n: str) -> pl.Expr:
        on = pl.col("name").list.contains(n)
        return pl.coalesce(pl.col(_score_column(n)), pl.when(on).then(fallback).otherwise(0.0)).alias(n)

    categories = pl.struct(*[pl.col("name").list.contains(n).alias(n) for n in MODERATION_API_CATEGORIES])
    scores = pl.struct(*[score(n) for n in MODERATION_API_CATEGORIES])
    input_types = pl.struct(*[pl.lit(["text"], pl.List(pl.String)).alias(n) for n in MODERATION_API_CATEGORIES])
    measured = pl.concat_list(
        pl.when(pl.col(_score_column(n)).is_not_null()).then(pl.lit(n)) for n in MODERATION_API_CATEGORIES
    ).list.drop_nulls()
    result = pl.struct(
        pl.col("flagged"),
        categories.alias("categories"),
        scores.alias("category_scores"),
        input_types.alias("category_applied_input_types"),
    )
    return (
        with_names.sort("_row")
        .with_columns(scored_categories=measured)
        .select(
            ("modr-" + pl.col("resume_key")).alias("id"),
            "model",
            pl.concat_list(result).alias("results"),
            *AUDIT_COLUMNS,
        )
    )


def _score_column(name: str) -> str:
    return f"_score:{name}"


def write_records(records: pl.DataFrame, to: str) -> None:
    """JSONL (one response object per line; `-` is stdout), or Parquet for a `.parquet` target."""
    if to.endswith(".parquet"):
        records.write_parquet(to)
        return
    with open(to, "w", encoding="utf-8") if to != "-" else sys.stdout as handle:
        for row in records.iter_rows(named=True):
            handle.write(json.dumps(row, default=_json_value, ensure_ascii=False) + "\n")


def _json_value(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The export command's options."""
    parser = AuditParser(prog="python -m pipelines.export", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the job's output folder (OUT)")
    parser.add_argument("--format", required=True, choices=["openai-moderation"])
    parser.add_argument("--to", required=True, help="target file: .jsonl (or - for stdout) or .parquet")
    parser.add_argument("--tenant", action="append", default=[], help="only these tenants (repeatable)")
    parser.add_argument("--since", type=utc_day, help="only verdicts of conversations from this UTC day on")
    parser.add_argument("--until", type=utc_day, help="only up to this UTC day (YYYY-MM-DD)")
    parser.add_argument("--policies", action="append", help="policy files/folders with the code mappings")
    parser.add_argument("--include-review", action="store_true", help="count `review` verdicts as flagged")
    return parser


def export(args: argparse.Namespace) -> int:
    """The export command, after parsing."""
    check_target("--to", args.to, TARGET_SUFFIXES, stdout_ok=True)
    check_day_range(args.since, args.until)
    require_verdicts(args.output)
    for path in args.policies or []:
        if not Path(path).exists():
            raise MissingInputError(f"--policies {path}: no such file or folder")
    require_tenants(args.output, args.tenant)
    frame = scan_output(args.output, args.since, args.until).verdicts
    if args.tenant:
        frame = frame.filter(pl.col("tenant_id").is_in(args.tenant))
    mappings = code_mappings(args.policies or [str(DEFAULT_POLICY_DIR)])  # an invalid policy file: exit 4
    records = to_openai_moderation(frame, mappings, args.include_review).collect()
    write_records(records, args.to)
    print(f"{records.height} record(s) → {args.to}", file=sys.stderr)
    if records.height == 0:
        print(f"note: no verdicts matched ({_filters(args)})", file=sys.stderr)
    return 0


def _filters(args: argparse.Namespace) -> str:
    given = [f"--tenant {t}" for t in args.tenant] + [
        f"--{k} {v}" for k in ("since", "until") if (v := getattr(args, k))
    ]
    return ", ".join(given) or "no filter"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_politely(parser.prog, lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
