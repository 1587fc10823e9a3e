"""The reviewer loop: queue out with the conversation, labels back in, agreement in the report."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.moderate import run
from pipelines.report import build_report
from pipelines.review import LabelError, agreement, export_queue, import_labels, main, scan_labels

REPO = Path(__file__).resolve().parents[1]
SAMPLES = str(REPO / "samples/logs/*.parquet")


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory):
    """A fake-engine run whose every verdict lands in review (the band covers the fake engine's 0.1 and 0.9)."""
    out = tmp_path_factory.mktemp("review") / "out"
    run(["--engine", "fake", "--input", SAMPLES, "--output", str(out), "--review-band", "0.05,0.95"])
    return out


def test_export_has_ids_reasoning_and_the_conversation_up_to_the_judged_turn(reviewed_run, tmp_path):
    target = tmp_path / "queue.csv"
    n = export_queue(str(reviewed_run), str(target), [SAMPLES], tenants=["globex"])
    queue = pl.read_csv(target)
    assert n == queue.height > 0 and set(queue["tenant_id"]) == {"globex"} and set(queue["verdict"]) == {"review"}
    assert {"resume_key", "reasoning", "conversation", "label", "reviewer", "note"} <= set(queue.columns)
    assert queue["label"].null_count() == n  # for the reviewers to fill in
    first = queue.row(0, named=True)
    assert first["conversation"].startswith("User: ")
    if first["unit"] == "prompt":
        assert first["conversation"].rstrip().splitlines()[-1].startswith("User: ")


def test_labels_come_back_and_the_report_shows_agreement(reviewed_run, tmp_path):
    target = tmp_path / "queue.parquet"
    export_queue(str(reviewed_run), str(target), [], tenants=["acme-kids"])
    queue = pl.read_parquet(target)
    labelled = queue.with_columns(
        label=pl.when(pl.col("p_unsafe") > 0.5).then(pl.lit("unsafe")).otherwise(pl.lit("safe")),
        reviewer=pl.lit("ana"),
    )
    labelled = labelled.with_columns(label=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("label"))
    labelled.write_csv(tmp_path / "done.csv")
    imported, skipped = import_labels(str(reviewed_run), str(tmp_path / "done.csv"))
    assert (imported, skipped) == (queue.height - 1, 1)
    table = agreement(scan_labels(str(reviewed_run)))
    kids = table.row(0, named=True)
    assert kids["tenant_id"] == "acme-kids" and kids["labels"] == imported
    assert kids["decided"] == 0 and kids["guard_review_label_unsafe"] + kids["guard_review_label_safe"] == imported
    assert build_report(str(reviewed_run))["tables"]["labels"].height == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": "maybe"}, r"row 2: field 'label' must be one of"),
        ({"resume_key": "nope"}, r"row 2: field 'resume_key'"),
    ],
)
def test_bad_label_files_name_the_row_and_field(reviewed_run, tmp_path, change, message):
    target = tmp_path / "queue.csv"
    export_queue(str(reviewed_run), str(target), [], limit=1)
    values = {"label": "safe", **change}
    pl.read_csv(target).with_columns(**{k: pl.lit(v) for k, v in values.items()}).write_csv(target)
    with pytest.raises(LabelError, match=message):
        import_labels(str(reviewed_run), str(target))
    assert main(["import", str(reviewed_run), "--labels", str(target)]) == 2
