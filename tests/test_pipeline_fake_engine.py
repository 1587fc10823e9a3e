"""Plumbing tests of the whole job on Beam's FnApiRunner with the FAKE engine (never a verdict of record).

They check what the pipeline does with rows, units, files and counts: every conversation ends up as verdict
rows or dead letters, the output is Hive-partitioned Parquet readable by polars, the manifest's books
balance, reruns resume, identical units are judged once, and failures are contained.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.job.books import check_accounting
from pipelines.job.manifest import RunManifest
from pipelines.job.moderate import run
from policies import load_policy_registry, tenant_id_problem
from scripts.generate_malformed_logs import write_malformed_corpus
from scripts.generate_sample_logs import write_canonical
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.io.read_logs import read_conversations_from_file
from transforms.prompts.units import judged_turns
from transforms.records import Conversation

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples" / "logs"
SAMPLE_GLOB = str(SAMPLES / "*.parquet")
T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


def moderate(out: Path, *extra: str, inputs=(SAMPLE_GLOB,), run_id: str = "run-1", engine_spec=None) -> RunManifest:
    argv = ["--engine", "fake", "--output", str(out), "--run-id", run_id, *extra]
    for pattern in inputs:
        argv += ["--input", str(pattern)]
    return run(argv, engine_spec=engine_spec)


def verdict_rows(out: Path) -> list[dict]:
    files = sorted((out / "verdicts").glob("tenant=*/date=*/*.parquet"))
    rows = []
    for path in files:
        tenant, date = path.parent.parent.name.removeprefix("tenant="), path.parent.name.removeprefix("date=")
        rows += [row | {"_tenant": tenant, "_date": date} for row in pq.read_table(path).to_pylist()]
    return rows


def error_rows(out: Path) -> list[dict]:
    files = sorted((out / "errors").glob("date=*/*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def read_manifest(out: Path, run_id: str) -> dict:
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


def sample_rows() -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in SAMPLES.glob("*.parquet"))


def conversations_in(paths, strict: bool = False) -> list[Conversation]:
    items = (c for p in paths for c in read_conversations_from_file(str(p), strict=strict))
    return [c for c in items if isinstance(c, Conversation)]


def assert_books_balance(manifest: dict) -> None:
    assert manifest["status"] == "succeeded", manifest["accounting_problems"]
    assert manifest["accounting_problems"] == []
    totals = manifest["totals"]
    rows = sum(totals.get(k, 0) for k in ("rows_to_units", "rows_dead_lettered", "rows_skipped"))
    assert rows == manifest["rows_read"]
    ends = sum(totals.get(k, 0) for k in ("verdicts_written", "units_dead_lettered", "units_already_done"))
    assert totals.get("units_made", 0) == ends


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[Path, RunManifest]:
    out = tmp_path_factory.mktemp("sample-run") / "out"
    return out, moderate(out)


# --- the sample logs ---------------------------------------------------------------------------------------------


def test_fake_engine_every_sample_conversation_has_verdicts_or_a_dead_letter(sample_run):
    out, _ = sample_run
    registry = load_policy_registry()
    expected, nothing_to_judge = set(), set()
    for conversation in conversations_in(SAMPLES.glob("*.parquet")):
        turns = judged_turns(conversation.messages, registry.for_tenant(conversation.tenant_id))
        expected |= {(conversation.conversation_id, level, index) for level, index in turns}
        if not turns:
            nothing_to_judge.add(conversation.conversation_id)
    rows = verdict_rows(out)
    got = [(r["conversation_id"], r["unit"], r["turn_index"]) for r in rows]
    assert len(got) == len(set(got)), "a unit was written twice"
    assert set(got) == expected
    errors = error_rows(out)
    assert {e["conversation_id"] for e in errors} == nothing_to_judge
    assert {e["error_kind"] for e in errors} <= {"nothing_to_judge"}
    for row in rows:
        assert row["_tenant"] == row["tenant_id"]
        assert row["verdict"] in ("safe", "unsafe", "review")
        assert row["model"] == "fake-engine" and row["run_id"] == "run-1" and row["verdict_mode"] == "cascade"
        assert 0.0 <= row["p_unsafe"] <= 1.0
    assert any(r["verdict"] == "unsafe" for r in rows) and any(r["verdict"] == "safe" for r in rows)


def test_fake_engine_partitions_match_each_rows_tenant_and_date(sample_run):
    out, _ = sample_run
    conversations = {c.conversation_id: c for c in conversations_in(SAMPLES.glob("*.parquet"))}
    for row in verdict_rows(out):
        conversation = conversations[row["conversation_id"]]
        assert row["_tenant"] == row["tenant_id"] == conversation.tenant_id
        assert row["_date"] == conversation.date
    late = conversations["conv-1126-017"]  # in the 2026-11-27 file, created 2026-11-26T23:58Z
    assert late.source_file.endswith("conversations-2026-11-27.parquet") and late.date == "2026-11-26"
    assert list((out / "verdicts").glob("tenant=globex/date=2026-11-26/*.parquet"))
    assert not list((out / "_staging").rglob("*.parquet")), "a staged file was left unpublished"


def test_fake_engine_output_reads_with_polars_hive_partitioning(sample_run):
    out, _ = sample_run
    # The README-style query. With a glob, polars 2.1 needs `hive_partitioning=True` (it is only inferred
    # when given the folder itself); `date=YYYY-MM-DD` is parsed as a Date.
    verdicts = pl.scan_parquet(f"{out}/verdicts/**/*.parquet", hive_partitioning=True)
    schema = verdicts.collect_schema()
    assert schema["tenant"] == pl.String and schema["date"] == pl.Date
    summary = (
        verdicts.filter(pl.col("date") == pl.date(2026, 11, 27))
        .group_by("tenant", "verdict")
        .agg(pl.len().alias("n"))
        .sort("tenant", "verdict")
        .collect()
    )
    rows = verdict_rows(out)
    expected = Counter((r["tenant_id"], r["verdict"]) for r in rows if r["_date"] == "2026-11-27")
    assert {(t, v): n for t, v, n in summary.iter_rows()} == dict(expected)
    readme = (  # the README's query, verbatim but for the folder
        verdicts.filter(pl.col("verdict") != "safe")
        .group_by("tenant", "date", "verdict")
        .agg(pl.len(), pl.col("p_unsafe").mean())
        .sort("tenant", "date")
        .collect()
    )
    not_safe = Counter((r["tenant_id"], r["_date"], r["verdict"]) for r in rows if r["verdict"] != "safe")
    assert {(t, str(d), v): n for t, d, v, n, _ in readme.iter_rows()} == dict(not_safe)
    assert readme.height > 0 and readme.columns == ["tenant", "date", "verdict", "len", "p_unsafe"]
    everything = verdicts.collect()
    assert everything.height == len(rows)
    assert (everything["tenant"] == everything["tenant_id"]).all()
    assert everything.filter(pl.col("tenant") == "acme-kids")["policy_id"].unique().to_list() == ["kids-learning"]
    from_folder = pl.scan_parquet(f"{out}/verdicts/").select("tenant", "date").collect()  # inferred from a folder
    assert from_folder.height == len(rows)


def test_fake_engine_manifest_accounts_for_every_row(sample_run):
    out, manifest = sample_run
    written = read_manifest(out, "run-1")
    assert written["status"] == manifest.status == "succeeded"
    assert written["rows_read"] == sample_rows() == 59
    assert written["totals"]["verdicts_written"] == len(verdict_rows(out))
    assert written["totals"]["units_made"] == len(verdict_rows(out))
    assert written["totals"].get("units_already_done", 0) == 0
    assert written["error_counts"] == dict(Counter(e["error_kind"] for e in error_rows(out)))
    assert written["model"] == "fake-engine" and written["template_version"] == "rsafe-v1"
    assert set(written["policies"]) == set(load_policy_registry().policies())
    assert len(written["input_files"]) == 3
    per_tenant_verdicts = Counter(r["tenant_id"] for r in verdict_rows(out))
    assert {t: k["verdicts_written"] for t, k in written["per_tenant"].items()} == dict(per_tenant_verdicts)
    assert_books_balance(written)


def test_fake_engine_date_option_restricts_output(sample_run, tmp_path):
    full_out, _ = sample_run
    out = tmp_path / "out"
    moderate(out, "--date", "2026-11-26", run_id="one-day")
    manifest = read_manifest(out, "one-day")
    assert_books_balance(manifest)
    turns_file = SAMPLES / "turns-2026-11-27.parquet"  # every row on 11-27 by its statistics: no row read
    turns_rows = pq.ParquetFile(turns_file).metadata.num_rows
    assert manifest["rows_read"] == sample_rows() - turns_rows
    assert manifest["input_counts"]["rows_not_read"] == turns_rows
    assert manifest["input_counts"]["files_skipped_by_statistics"] == 1
    assert manifest["totals"]["rows_skipped"] > 0  # the next day's file holds a late 11-26 conversation: read
    dates = {p.name for p in (out / "verdicts").glob("tenant=*/date=*")}
    assert dates == {"date=2026-11-26"}
    got = {(r["conversation_id"], r["unit"], r["turn_index"]) for r in verdict_rows(out)}
    full = verdict_rows(full_out)
    assert got == {(r["conversation_id"], r["unit"], r["turn_index"]) for r in full if r["_date"] == "2026-11-26"}
    assert any(c == "conv-1126-017" for c, _, _ in got)  # a late arrival in the next day's file counts


def test_fake_engine_rerun_resumes_without_duplicates(sample_run, tmp_path):
    first_out, first = sample_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    before = sorted(p.relative_to(out) for p in (out / "verdicts").rglob("*.parquet"))
    second = moderate(out, run_id="run-2")
    manifest = read_manifest(out, "run-2")
    assert_books_balance(manifest)
    totals = manifest["totals"]
    assert totals["units_made"] == first.totals["units_made"]
    assert totals["units_already_done"] == totals["units_made"]
    assert totals.get("verdicts_written", 0) == 0
    assert second.status == "succeeded"
    assert sorted(p.relative_to(out) for p in (out / "verdicts").rglob("*.parquet")) == before
    keys = [r["resume_key"] for r in verdict_rows(out)]
    assert len(keys) == len(set(keys))


# --- de-duplication, failures, bad input ---------------------------------------------------------------------------


def conversation_row(cid: str, tenant: str, *messages: tuple[str, str], created_at: dt.datetime = T0) -> dict:
    return {
        "conversation_id": cid,
        "tenant_id": tenant,
        "created_at": created_at,
        "messages": [{"role": role, "content": content} for role, content in messages],
    }


EVIL_TENANTS = ["../evil", "x/../../../../evil", "/tmp/evil-abs", "..", "a\\..\\evil"]


@pytest.fixture(scope="module", params=["worker", "shuffle"])
def crafted_run(tmp_path_factory, request) -> tuple[Path, Path, dict]:
    """One run over a small hand-made log: identical conversations (two in one engine batch, a third batches
    later), one that makes the engine fail, and path-unsafe tenant ids, among ordinary conversations; once
    per `--dedup` mode. Returns (base folder, OUTPUT, manifest)."""
    base = tmp_path_factory.mktemp(f"crafted-run-{request.param}")
    question = ("user", "How do I reset my password?")
    rows = [conversation_row("dup-a", "globex", question), conversation_row("dup-b", "globex", question)]
    rows += [
        conversation_row(f"ok-{i}", "globex", ("user", f"Where is order {i}?"), ("assistant", "On its way."))
        for i in range(5)
    ]
    rows.insert(4, conversation_row("boom", "globex", ("user", "please explode-now"), ("assistant", "No.")))
    rows.append(conversation_row("kid", "acme-kids", ("user", "Why is the sky blue?"), ("assistant", "Light.")))
    rows += [conversation_row(f"evil-{i}", tenant, ("user", "hi")) for i, tenant in enumerate(EVIL_TENANTS)]
    rows.append(conversation_row("dup-c", "globex", question))
    write_canonical(rows, base / "in" / "logs.parquet")
    out = base / "sub" / "out"
    spec = FakeEngineSpec(fail_words=("explode-now",))
    manifest = moderate(out, "--batch-size", "4", "--dedup", request.param, inputs=[base / "in"], engine_spec=spec)
    assert manifest.status == "succeeded"
    return base, out, read_manifest(out, "run-1")


def test_fake_engine_identical_units_are_judged_once_and_fanned_out(crafted_run):
    _, out, manifest = crafted_run
    written = [r for r in verdict_rows(out) if r["conversation_id"].startswith("dup-")]
    assert len(written) == 3
    assert {r["conversation_id"] for r in written} == {"dup-a", "dup-b", "dup-c"}
    assert sorted(r["deduplicated"] for r in written) == [False, True, True]
    assert len({r["content_key"] for r in written}) == 1
    assert len({r["resume_key"] for r in written}) == 3
    first, *copies = written
    for column in ("verdict", "outcome", "p_unsafe", "reasoning", "raw_output", "prompt_tokens"):
        assert all(copy[column] == first[column] for copy in copies)
    others = [r for r in verdict_rows(out) if not r["conversation_id"].startswith("dup-")]
    assert not any(r["deduplicated"] for r in others)
    assert_books_balance(manifest)


def test_fake_engine_engine_failure_dead_letters_only_that_conversation(crafted_run):
    _, out, manifest = crafted_run
    assert_books_balance(manifest)
    errors = [e for e in error_rows(out) if e["error_kind"] == "engine_error"]
    assert {(e["conversation_id"], e["unit"], e["turn_index"]) for e in errors} == {
        ("boom", "prompt", 0),
        ("boom", "response", 1),
    }
    assert {(e["stage"], e["rows"], e["tenant_id"]) for e in errors} == {("inference", 0, "globex")}
    assert all("fake engine failure" in e["message"] for e in errors)
    verdicts = verdict_rows(out)
    assert "boom" not in {r["conversation_id"] for r in verdicts}
    expected = {**{f"ok-{i}": 2 for i in range(5)}, "kid": 2, "dup-a": 1, "dup-b": 1, "dup-c": 1}
    assert Counter(r["conversation_id"] for r in verdicts) == expected
    assert manifest["error_counts"] == {"engine_error": 2, "unsafe_tenant_id": len(EVIL_TENANTS)}
    assert manifest["per_tenant"]["globex"]["units_dead_lettered"] == 2
    assert manifest["per_tenant"]["globex"]["units_made"] == 15
    assert manifest["per_tenant"]["globex"]["verdicts_written"] == 13


@pytest.mark.parametrize(("dedup", "strict"), [("worker", False), ("shuffle", False), ("worker", True)])
def test_fake_engine_malformed_corpus_end_to_end(tmp_path, dedup, strict):
    cases = write_malformed_corpus(tmp_path / "in")
    cases = cases if strict else [case.tolerant() for case in cases]
    extra = ["--strict-input"] if strict else []
    manifest = moderate(tmp_path / "out", "--dedup", dedup, *extra, inputs=[tmp_path / "in"])
    written = read_manifest(tmp_path / "out", "run-1")
    assert manifest.status == "succeeded"
    assert_books_balance(written)
    assert written["rows_read"] == sum(case.rows or 0 for case in cases)

    errors = error_rows(tmp_path / "out")
    seen = {(Path(e["source_file"]).name, e["error_kind"]) for e in errors}
    for case in cases:
        if case.error_kind is not None:
            assert (case.file_name, case.error_kind) in seen, case
    assert {c.error_kind for c in cases if c.error_kind} <= {e["error_kind"] for e in errors}

    good = conversations_in(sorted((tmp_path / "in").glob("*.parquet")), strict)
    per_file = Counter(Path(c.source_file).name for c in good)
    for case in cases:
        assert per_file.get(case.file_name, 0) == case.good_conversations, case
    kept: dict[str, Conversation] = {}
    for conversation in sorted(good, key=lambda c: (c.source_file, c.source_row)):
        kept.setdefault(conversation.conversation_id, conversation)
    verdicts = verdict_rows(tmp_path / "out")
    judged = {(r["conversation_id"], Path(r["source_file"]).name) for r in verdicts}
    assert judged == {(cid, Path(c.source_file).name) for cid, c in kept.items()}
    duplicates = [e for e in errors if e["error_kind"] == "duplicate_conversation_id"]
    assert len(duplicates) == len(good) - len(kept)
    assert written["totals"]["verdicts_written"] == len(verdicts)
    repaired = {r["conversation_id"]: r["input_repairs"] for r in verdicts if r["input_repairs"]}
    if strict:
        assert repaired == {} and written["input_repairs"] == {}
    else:  # the first file's repaired bad-1 is judged, its copies in other files are duplicates
        kinds = {entry.split(":")[0] for entries in repaired.values() for entry in entries}
        assert kinds and set(written["input_repairs"]) == kinds


def test_fake_engine_path_unsafe_tenant_stays_inside_output(crafted_run):
    base, out, manifest = crafted_run
    errors = [e for e in error_rows(out) if e["error_kind"] == "unsafe_tenant_id"]
    assert {e["tenant_id"]: e["conversation_id"] for e in errors} == {
        tenant: f"evil-{i}" for i, tenant in enumerate(EVIL_TENANTS)
    }
    assert all(e["stage"] == "policy" and e["rows"] == 1 for e in errors)
    assert not any(r["conversation_id"].startswith("evil-") for r in verdict_rows(out))
    # nothing was written outside OUTPUT
    assert sorted(p.name for p in base.iterdir()) == ["in", "sub"]
    assert [p.name for p in (base / "sub").iterdir()] == ["out"]
    expected = ["_lease.json", "_ledger", "_runs", "_staging", "errors", "verdicts"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert not list(base.parent.glob("evil*")) and not Path("/tmp/evil-abs").exists()
    for folder in (out / "verdicts").iterdir():
        assert folder.name.startswith("tenant=") and tenant_id_problem(folder.name.removeprefix("tenant=")) is None
    for path in out.rglob("*"):
        assert path.resolve().is_relative_to(out.resolve())
    assert_books_balance(manifest)


# --- the accounting check ------------------------------------------------------------------------------------------


def test_check_accounting_balanced():
    counters = {
        "rows_to_units": {"a": 4, "b": 2},
        "rows_dead_lettered": {"a": 1},
        "rows_skipped": {"b": 3},
        "units_made": {"a": 6, "b": 2},
        "verdicts_written": {"a": 4, "b": 1},
        "units_dead_lettered": {"a": 1},
        "units_already_done": {"a": 1, "b": 1},
        "error:engine_error": {"a": 1},
    }
    assert check_accounting(10, counters) == []


def test_check_accounting_names_the_counts_that_do_not_balance(tmp_path):
    counters = {
        "rows_to_units": {"a": 5},
        "rows_dead_lettered": {"a": 1},
        "units_made": {"a": 4, "b": 2},
        "verdicts_written": {"a": 3, "b": 2},
        "units_dead_lettered": {"b": 0},
    }
    problems = check_accounting(7, counters)
    assert problems == [
        "rows read 7 != rows_to_units 5 + rows_dead_lettered 1 + rows_skipped 0 = 6",
        "tenant 'a': units made 4 != verdicts_written 3 + units_dead_lettered 0 + units_already_done 0 = 3",
    ]
    manifest = RunManifest("r", str(tmp_path), "now", {}, "fake-engine", "rsafe-v1", [], {})
    manifest.finish(7, counters)
    assert manifest.status == "failed" and manifest.accounting_problems == problems
    assert json.loads((tmp_path / "_runs" / "r.json").read_text())["status"] == "failed"


def test_check_accounting_extra_rows():
    problems = check_accounting(0, {"rows_to_units": {"a": 1}})
    assert problems == ["rows read 0 != rows_to_units 1 + rows_dead_lettered 0 + rows_skipped 0 = 1"]


def test_written_files_have_the_documented_schema(sample_run):
    from transforms.io.write_partitions import VERDICT_SCHEMA

    out, _ = sample_run
    for path in (out / "verdicts").rglob("*.parquet"):
        schema = pq.read_schema(path)
        assert schema.remove_metadata() == VERDICT_SCHEMA
        assert "tenant" not in schema.names and "date" not in schema.names
    assert pa.types.is_timestamp(VERDICT_SCHEMA.field("processed_at").type)


def test_fake_engine_unknown_tenants_are_counted_and_case_variants_flagged(tmp_path, caplog):
    rows = [
        conversation_row("k1", "Acme-Kids", ("user", "Why is the sky blue?")),
        conversation_row("k2", "Acme-Kids", ("user", "Why is grass green?")),
        conversation_row("n1", "newco", ("user", "Hello?")),
        conversation_row("g1", "globex", ("user", "Where is my order?")),
    ]
    write_canonical(rows, tmp_path / "in" / "logs.parquet")
    with caplog.at_level("WARNING", logger="transforms.prompts.units"):
        manifest = moderate(tmp_path / "out", inputs=[tmp_path / "in"])
    assert manifest.status == "succeeded"
    assert manifest.unknown_tenants == {
        "Acme-Kids": {"conversations": 2, "likely_typo_of": "acme-kids"},
        "newco": {"conversations": 1, "likely_typo_of": None},
    }
    warnings = [r.getMessage() for r in caplog.records if "not in the tenants file" in r.getMessage()]
    assert len(warnings) == 2 and any("likely a typo of the listed tenant 'acme-kids'" in w for w in warnings)
    assert read_manifest(tmp_path / "out", "run-1")["unknown_tenants"]["newco"]["conversations"] == 1
