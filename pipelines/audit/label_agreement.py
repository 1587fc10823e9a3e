"""How reviewers' labels (`OUT/labels/`, `python -m pipelines.review import`) agree with the guard.

Per tenant: the labels, the guard's decided verdicts among them (`safe`/`unsafe`; a `review` verdict decided
nothing), raw agreement and Cohen's κ over the decided ones, and the confusion counts `guard_<verdict>_label_<label>`.
`agreement_over_time` gives the same per day the labels were imported. One label per (verdict, reviewer): the
newest import of a reviewer replaces their earlier label of that verdict.
"""

from __future__ import annotations

import polars as pl

LABELS = ("safe", "unsafe")
GUARD_VERDICTS = ("safe", "unsafe", "review")
CONFUSION = tuple(f"guard_{g}_label_{lab}" for g in GUARD_VERDICTS for lab in LABELS)


def scan_labels(output: str) -> pl.LazyFrame | None:
    """Every imported label, one per (resume key, reviewer) (the newest import wins), or None when there are none."""
    try:
        labels = pl.scan_parquet(f"{output.rstrip('/')}/labels/**/*.parquet", hive_partitioning=True)
        labels.collect_schema()
    except (FileNotFoundError, pl.exceptions.ComputeError):
        return None
    return (
        labels.with_columns(pl.col("date").cast(pl.Date))
        .sort("labelled_at")
        .group_by("resume_key", pl.col("reviewer").fill_null(""))
        .last()
        .with_columns(reviewer=pl.when(pl.col("reviewer") != "").then(pl.col("reviewer")))
    )


def _agreement_columns() -> dict[str, pl.Expr]:
    decided = pl.col("guard_verdict").is_in(list(LABELS))
    guard_unsafe = decided & (pl.col("guard_verdict") == "unsafe")
    label_unsafe = decided & (pl.col("label") == "unsafe")
    n = decided.sum()
    observed = pl.when(n > 0).then((decided & (pl.col("guard_verdict") == pl.col("label"))).sum() / n)
    chance = (guard_unsafe.sum() / n) * (label_unsafe.sum() / n) + (1 - guard_unsafe.sum() / n) * (
        1 - label_unsafe.sum() / n
    )
    kappa = pl.when((n > 0) & (chance < 1)).then((observed - chance) / (1 - chance))
    confusion = {
        f"guard_{g}_label_{lab}": ((pl.col("guard_verdict") == g) & (pl.col("label") == lab)).sum()
        for g in GUARD_VERDICTS
        for lab in LABELS
    }
    return {"labels": pl.len(), "decided": n, "agreement": observed, "kappa": kappa, **confusion}


AGREEMENT_SCHEMA = {"tenant_id": pl.String, "labels": pl.UInt32, "decided": pl.UInt32, "agreement": pl.Float64,
                    "kappa": pl.Float64, **dict.fromkeys(CONFUSION, pl.UInt32)}  # fmt: skip


def agreement(labels: pl.LazyFrame | None) -> pl.DataFrame:
    """Per tenant: labels, decided, agreement, Cohen's κ (null when undefined: no decided label, or one class
    only on both sides) and the confusion counts."""
    if labels is None:
        return pl.DataFrame(schema=AGREEMENT_SCHEMA)
    return labels.group_by("tenant_id").agg(**_agreement_columns()).sort("tenant_id").collect()


def agreement_over_time(labels: pl.LazyFrame | None) -> pl.DataFrame:
    """Per tenant and day labels were imported: the same figures as `agreement`."""
    if labels is None:
        return pl.DataFrame(schema={"tenant_id": pl.String, "date": pl.Date, **AGREEMENT_SCHEMA})
    return labels.group_by("tenant_id", "date").agg(**_agreement_columns()).sort("tenant_id", "date").collect()


def agreement_lines(table: pl.DataFrame) -> list[str]:
    """One line per tenant: labels, agreement, κ and the confusion counts (guard → label)."""

    def figure(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = []
    for row in table.iter_rows(named=True):
        confusion = ", ".join(f"{g}→{lab} {row[f'guard_{g}_label_{lab}']}" for g in GUARD_VERDICTS for lab in LABELS)
        lines.append(
            f"{row['tenant_id']}: {row['labels']} label(s), {row['decided']} on decided verdicts, agreement "
            f"{figure(row['agreement'])}, Cohen's κ {figure(row['kappa'])}; guard→label: {confusion}"
        )
    return lines
