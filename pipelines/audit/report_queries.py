"""The audit report's figures as Polars queries over the job's output (each one is shown in the README).

Every function takes the verdict rows (`scan_output(OUT).verdicts`, a LazyFrame with the Hive columns `tenant`
and `date`) or the dead-letter rows, and returns a small DataFrame; `pipelines.audit.report` only draws and lays out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl


@dataclasses.dataclass(frozen=True)
class Output:
    """The published rows of one output folder, optionally restricted to a range of days."""

    verdicts: pl.LazyFrame
    errors: pl.LazyFrame | None


def verdict_schema() -> pl.Schema:
    """The verdict files' columns as Polars types (the partition columns `tenant` and `date` come from paths)."""
    from transforms.io.write_partitions import VERDICT_SCHEMA

    return pl.Schema(pl.from_arrow(VERDICT_SCHEMA.empty_table()).schema)


def scan_output(output: str, since: str | None = None, until: str | None = None) -> Output:
    """Lazy scans of `OUT/verdicts` and `OUT/errors` (partition columns `tenant`, `date`), filtered by day."""
    root = output.rstrip("/")
    # read with today's schema: nights written before a column existed (e.g. `category_scores`) get it as nulls
    verdicts = pl.scan_parquet(
        f"{root}/verdicts/**/*.parquet", hive_partitioning=True, schema=verdict_schema(), missing_columns="insert"
    )
    verdicts = verdicts.with_columns(pl.col("date").cast(pl.Date))
    try:
        errors = pl.scan_parquet(f"{root}/errors/**/*.parquet", hive_partitioning=True)
        errors.collect_schema()
    except (FileNotFoundError, pl.exceptions.ComputeError):
        errors = None
    if since:
        verdicts = verdicts.filter(pl.col("date") >= dt.date.fromisoformat(since))
    if until:
        verdicts = verdicts.filter(pl.col("date") <= dt.date.fromisoformat(until))
    return Output(verdicts, errors)


def tenants_in(verdicts: pl.LazyFrame) -> list[str]:
    """The tenants with verdict rows, sorted."""
    return sorted(verdicts.select(pl.col("tenant_id").unique()).collect()["tenant_id"].to_list())


def verdict_mix(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per tenant and day: units judged, safe / unsafe / review counts, unsafe and review rates."""
    return (
        verdicts.group_by("tenant", "date")
        .agg(
            units=pl.len(),
            safe=(pl.col("verdict") == "safe").sum(),
            unsafe=(pl.col("verdict") == "unsafe").sum(),
            review=(pl.col("verdict") == "review").sum(),
        )
        .with_columns(unsafe_rate=pl.col("unsafe") / pl.col("units"), review_rate=pl.col("review") / pl.col("units"))
        .sort("tenant", "date")
        .collect()
    )


DRIFT_COLUMNS = (
    "tenant", "date", "units", "unsafe_rate", "unsafe_rate_trailing", "review_rate", "review_rate_trailing", "drift",
)  # fmt: skip


def drift(mix: pl.DataFrame, window: int = 7, threshold: float = 0.10, min_nights: int = 2) -> pl.DataFrame:
    """Per tenant and night: the unsafe and review rates against their trailing mean over the previous `window`
    nights; `drift` when either moves more than `threshold` (absolute) from it, once `min_nights` are behind."""
    trailing = {
        f"{rate}_trailing": pl.col(rate).shift(1).rolling_mean(window, min_samples=min_nights).over("tenant")
        for rate in ("unsafe_rate", "review_rate")
    }
    return (
        mix.sort("tenant", "date")
        .with_columns(**trailing)
        .with_columns(
            drift=((pl.col("unsafe_rate") - pl.col("unsafe_rate_trailing")).abs() > threshold)
            | ((pl.col("review_rate") - pl.col("review_rate_trailing")).abs() > threshold)
        )
        .with_columns(pl.col("drift").fill_null(False))
        .select(*DRIFT_COLUMNS)
    )


def p_unsafe_histogram(verdicts: pl.LazyFrame, bins: int = 10) -> pl.DataFrame:
    """Per tenant: how many units fall in each P(unsafe) bin of width 1/bins (units without a P are left out)."""
    return (
        verdicts.filter(pl.col("p_unsafe").is_not_null())
        .with_columns(bin=(pl.col("p_unsafe") * bins).floor().clip(0, bins - 1).cast(pl.Int32))
        .group_by("tenant", "bin")
        .agg(units=pl.len())
        .with_columns(low=pl.col("bin") / bins)
        .sort("tenant", "bin")
        .collect()
    )


CATEGORY_SCORE_CUT = 0.5  # a category head's P at or above this counts the unit under that code


def category_counts(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per tenant and policy code, over unsafe units: `named`, how many the guard named it for (the
    `rsafe-categories` template names codes), and `scored`, how many a category head scored at or above
    `CATEGORY_SCORE_CUT` (the embedded guard's heads; none for codes without a head), with their mean score."""
    unsafe = verdicts.filter(pl.col("verdict") == "unsafe")
    named = (
        unsafe.select("tenant", code=pl.col("categories"))
        .explode("code")
        .drop_nulls("code")
        .group_by("tenant", "code")
        .agg(named=pl.len())
    )
    scored = (
        unsafe.select("tenant", entry=pl.col("category_scores"))
        .explode("entry")
        .drop_nulls("entry")
        .unnest("entry")
        .group_by("tenant", "code")
        .agg(scored=(pl.col("score") >= CATEGORY_SCORE_CUT).sum().cast(pl.UInt32), mean_score=pl.col("score").mean())
    )
    counts = named.join(scored, on=["tenant", "code"], how="full", coalesce=True)
    return (
        counts.with_columns(pl.col("named").fill_null(0).cast(pl.UInt32), pl.col("scored").fill_null(0))
        .filter((pl.col("named") > 0) | (pl.col("scored") > 0))
        .sort(["scored", "named", "tenant", "code"], descending=[True, True, False, False])
        .select("tenant", "code", "named", "scored", "mean_score")
        .collect()
    )


UNIT_KEYS = ("tenant", "date", "conversation_id", "unit", "turn_index")
"""The columns that say which unit of which night a listed row is."""


def review_queue(verdicts: pl.LazyFrame, limit: int = 20, reasoning_chars: int = 400) -> pl.DataFrame:
    """The newest `limit` units sent to review, with the guard's reasoning (cut to `reasoning_chars`)."""
    return (
        verdicts.filter(pl.col("verdict") == "review")
        .sort("processed_at", descending=True)
        .head(limit)
        .select(*UNIT_KEYS, "outcome", "p_unsafe", reasoning=pl.col("reasoning").str.slice(0, reasoning_chars))
        .collect()
    )


def flagged_units(verdicts: pl.LazyFrame, limit: int = 1000) -> pl.DataFrame:
    """The unsafe units per tenant and night (most certain first within a night, at most `limit` in all): ids, who
    decided (`verdict_source`: head, model, forced or score), the codes named and scored, and the reasoning."""
    return (
        verdicts.filter(pl.col("verdict") == "unsafe")
        .sort(
            ["tenant", "date", "p_unsafe", "conversation_id", "turn_index"],
            descending=[False, True, True, False, False],
            nulls_last=True,
        )
        .head(limit)
        .select(
            *UNIT_KEYS,
            "verdict",
            "p_unsafe",
            "verdict_source",
            "categories",
            "category_scores",
            "reasoning",
            "source_file",
            "resume_key",
        )
        .collect()
    )


def runs_covered(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per run: the nights it judged, its units, and the models, policy and calibration versions it used."""
    return (
        verdicts.group_by("run_id")
        .agg(
            first_day=pl.col("date").min(),
            last_day=pl.col("date").max(),
            units=pl.len(),
            models=pl.col("model").unique().sort(),
            policies=(pl.col("policy_id") + "@" + pl.col("policy_version")).unique().sort(),
            calibrations=pl.col("calibration_version").drop_nulls().unique().sort(),
            started=pl.col("processed_at").min(),
        )
        .sort("started")
        .drop("started")
        .collect()
    )


def dead_letters_by_kind(errors: pl.LazyFrame | None) -> pl.DataFrame:
    """Dead-letter records and the input rows they account for, by stage and kind."""
    if errors is None:
        return pl.DataFrame(schema={"stage": pl.String, "error_kind": pl.String, "records": pl.UInt32,
                                    "rows": pl.Int64})  # fmt: skip
    return (
        errors.group_by("stage", "error_kind")
        .agg(records=pl.len(), rows=pl.col("rows").sum())
        .sort("records", descending=True)
        .collect()
    )


def cost_by_tenant(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per tenant: units, prompt and generated tokens (units reused from a cache or a duplicate cost none)."""
    fresh = ~(pl.col("from_cache").fill_null(False) | pl.col("deduplicated").fill_null(False))
    return (
        verdicts.group_by("tenant")
        .agg(
            units=pl.len(),
            units_judged=fresh.sum(),
            prompt_tokens=pl.col("prompt_tokens").filter(fresh).sum(),
            completion_tokens=pl.col("completion_tokens").filter(fresh).sum(),
        )
        .with_columns(
            share_of_tokens=(pl.col("prompt_tokens") + pl.col("completion_tokens"))
            / (pl.col("prompt_tokens") + pl.col("completion_tokens")).sum()
        )
        .sort("tenant")
        .collect()
    )


def versions_in_use(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per tenant, each (model, policy version) pair with the first and last day it judged and its units; a
    tenant with more than one row changed model or policy within the range (`changed_on`: first day of a pair
    after the tenant's first)."""
    return (
        verdicts.group_by("tenant", "model", "policy_id", "policy_version")
        .agg(first_day=pl.col("date").min(), last_day=pl.col("date").max(), units=pl.len())
        .sort("tenant", "first_day")
        .with_columns(
            changed_on=pl.when(pl.col("first_day") > pl.col("first_day").min().over("tenant")).then(pl.col("first_day"))
        )
        .collect()
    )


def consistency_flags(verdicts: pl.LazyFrame) -> pl.DataFrame:
    """Per tenant and flag: reasoned verdicts worth a second look (`consistency`: thought_cut, score_disagrees)."""
    if "consistency" not in verdicts.collect_schema().names():
        return pl.DataFrame(schema={"tenant": pl.String, "consistency": pl.String, "units": pl.UInt32})
    return (
        verdicts.filter(pl.col("consistency").is_not_null())
        .group_by("tenant", "consistency")
        .agg(units=pl.len())
        .sort("tenant", "consistency")
        .collect()
    )
