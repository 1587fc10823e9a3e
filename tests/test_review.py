"""The reviewer loop: queue out with the conversation, labels back in, agreement in the report."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.audit.label_agreement import agreement_lines
from pipelines.audit.report import build_report
from pipelines.audit.review import LabelError, agreement, export_queue, import_labels, main, scan_labels
from pipelines.job.moderate import run
from transforms.engines.fake_engine import FakeEngineSpec

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
    imported, replaced, notes = import_labels(str(reviewed_run), str(tmp_path / "done.csv"))
    assert (imported, replaced, notes["skipped"]) == (queue.height - 1, 0, [2])
    table = agreement(scan_labels(str(reviewed_run)))
    kids = table.row(0, named=True)
    assert kids["tenant_id"] == "acme-kids" and kids["labels"] == imported
    assert kids["decided"] == 0 and kids["guard_review_label_unsafe"] + kids["guard_review_label_safe"] == imported
    report = build_report(str(reviewed_run))
    labels = report["tables"]["labels"]  # the whole range (no date), then per day labelled
    assert labels.height == 2 and labels["date"].to_list()[0] is None and labels["date"][1] is not None
    assert kids["kappa"] is None  # every guard verdict was `review`: nothing decided, κ undefined


def test_kappa_and_confusion_counts_on_known_labels():
    """guard unsafe/safe vs label: 4 agree unsafe, 1 guard unsafe labelled safe, 3 agree safe, 2 guard safe
    labelled unsafe: observed 0.7, chance 0.5·0.6 + 0.5·0.4 = 0.5, κ 0.4."""
    pairs = [("unsafe", "unsafe")] * 4 + [("unsafe", "safe")] + [("safe", "safe")] * 3 + [("safe", "unsafe")] * 2
    labels = pl.LazyFrame({"tenant_id": ["t"] * 10, "guard_verdict": [g for g, _ in pairs],
                           "label": [lab for _, lab in pairs]})  # fmt: skip
    row = agreement(labels).row(0, named=True)
    assert row["agreement"] == pytest.approx(0.7) and row["kappa"] == pytest.approx(0.4)
    assert (row["guard_unsafe_label_safe"], row["guard_safe_label_unsafe"]) == (1, 2)
    assert "agreement 0.700, Cohen's κ 0.400" in agreement_lines(agreement(labels))[0]


@pytest.fixture(scope="module")
def unbanded_run(tmp_path_factory):
    """A night with no review band (the default): the head decides, nothing lands in review."""
    out = tmp_path_factory.mktemp("unbanded") / "out"
    run(["--input", SAMPLES, "--output", str(out)],
        engine_spec=FakeEngineSpec(head_version="h", head_categories=("U1", "U7")))  # fmt: skip
    return out


def test_an_empty_queue_says_why_and_how_to_fill_it(unbanded_run, tmp_path, capsys):
    assert main(["export", str(unbanded_run), "--to", str(tmp_path / "q.csv")]) == 0
    err = capsys.readouterr().err
    assert "0 queued verdict(s)" in err and "the run had no --review-band" in err and "--all-unsafe" in err
    assert main(["export", str(unbanded_run), "--to", str(tmp_path / "q.csv"), "--all-unsafe"]) == 0
    assert "5 queued verdict(s)" in capsys.readouterr().err


def test_a_relative_input_from_elsewhere_is_missing_input_not_a_traceback(unbanded_run, tmp_path, capsys,
                                                                          monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = ["export", str(unbanded_run), "--to", "q.csv", "--all-unsafe", "--input", "samples/logs/*.parquet"]
    assert main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matched no files" in err and f"read from {tmp_path}" in err


def test_a_review_round_trip_imported_twice_gives_the_same_labels_and_figures(unbanded_run, tmp_path, capsys):
    """export, label, import, import again: the second import replaces the first (same rows on disk, same
    agreement printed); another reviewer's labels are kept beside them."""
    queue_path, done = tmp_path / "q.csv", tmp_path / "done.csv"
    assert main(["export", str(unbanded_run), "--to", str(queue_path), "--all-unsafe"]) == 0
    queue = pl.read_csv(queue_path)
    labels = ["unsafe", "unsafe", "safe", "unsafe", None]
    queue.with_columns(label=pl.Series(labels), reviewer=pl.lit("ana"),
                       note=pl.Series([None, None, None, None, "not sure"])).write_csv(done)  # fmt: skip
    capsys.readouterr()
    printed = []
    for _ in range(2):
        assert main(["import", str(unbanded_run), "--labels", str(done)]) == 0
        captured = capsys.readouterr()
        printed.append(captured.out)
        assert "row(s) 6 have a note but no label" in captured.err
    assert printed[0] == printed[1] and "Cohen's κ" in printed[0]
    report = build_report(str(unbanded_run))  # agreement over time: a row and a point per day labelled
    assert report["plots"]["labels"] is not None and report["tables"]["labels"]["date"].drop_nulls().len() >= 1
    stored = pl.read_parquet(unbanded_run / "labels" / "**" / "*.parquet")
    assert stored.height == 4 and set(stored["reviewer"]) == {"ana"}
    queue.with_columns(label=pl.lit("safe"), reviewer=pl.lit(None, pl.String)).write_csv(done)
    assert main(["import", str(unbanded_run), "--labels", str(done), "--reviewer", "bo"]) == 0
    assert main(["import", str(unbanded_run), "--labels", str(done)]) == 0  # no reviewer anywhere: warned
    assert "row(s) 2, 3, 4, 5, 6 have no reviewer" in capsys.readouterr().err
    stored = pl.read_parquet(unbanded_run / "labels" / "**" / "*.parquet")
    assert stored.group_by("reviewer").len().sort("reviewer", nulls_last=True).rows() == [
        ("ana", 4), ("bo", 5), (None, 5),
    ]  # fmt: skip


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
    assert not (reviewed_run / "labels").exists() or not any(
        "nope" in r for r in pl.read_parquet(reviewed_run / "labels" / "**" / "*.parquet")["resume_key"]
    )
