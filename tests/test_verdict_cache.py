"""The cross-night verdict cache (`--verdict-cache`) with the FAKE engine: reuse, settings keys, atomic appends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.job.moderate import run
from scripts.generate_sample_logs import generate_conversations, write_canonical
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.engines.protocol import SamplingSettings
from transforms.io.write_partitions import VERDICT_SCHEMA
from transforms.judging.decisions import Judgement, JudgeSettings
from transforms.judging.run_context import RunContext
from transforms.judging.verdict_cache import (
    CACHE_SCHEMA,
    cache_files,
    cache_row,
    judgement_from_entry,
    load_cache,
    settings_key,
)
from transforms.judging.verdict_rows import verdict_row
from transforms.records import ModerationUnit

# Columns that say what was judged and what the engine answered (not when or by which run the row was written).
JUDGED = ("verdict", "outcome", "verdict_source", "p_unsafe", "raw_output", "reasoning", "finish_reason",
          "prompt_tokens", "completion_tokens", "categories", "content_key", "policy_version")  # fmt: skip


def moderate(out: Path, log: Path, cache: Path, run_id: str, *extra: str):
    argv = ["--engine", "fake", "--input", str(log), "--output", str(out), "--run-id", run_id]
    return run([*argv, "--verdict-cache", str(cache), *extra])


def verdict_rows(out: Path) -> dict[str, dict]:
    rows = [r for p in sorted((out / "verdicts").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["resume_key"]: r for r in rows}


def manifest(out: Path, run_id: str) -> dict:
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


@pytest.fixture(scope="module", params=["worker", "shuffle"])
def two_runs(tmp_path_factory, request):
    """Night 1 fills an empty cache; night 2 moderates the same log into a new output with the same cache
    (once per `--dedup` mode)."""
    root = tmp_path_factory.mktemp(f"verdict-cache-{request.param}")
    rows = generate_conversations(120, seed=3)
    rows += [dict(r, conversation_id=f"replay-{i}") for i, r in enumerate(rows[:20])]  # identical content
    log = root / "logs" / "night.parquet"
    write_canonical(rows, log)
    cache = root / "cache"
    first = moderate(root / "out-1", log, cache, "night-1", "--dedup", request.param)
    second = moderate(root / "out-2", log, cache, "night-2", "--dedup", request.param)
    return root, log, cache, first, second


def test_first_run_judges_everything_and_fills_the_cache(two_runs):
    root, _, cache, first, _ = two_runs
    assert first.status == "succeeded"
    assert first.totals.get("units_from_cache", 0) == 0
    rows = verdict_rows(root / "out-1")
    assert rows and not any(r["from_cache"] for r in rows.values())
    entries = load_cache(str(cache))
    # one entry per judged content: duplicates of a content are not stored twice
    assert sorted(e["content_key"] for e in entries) == sorted({r["content_key"] for r in rows.values()})
    assert all(e["run_id"] == "night-1" for e in entries)
    assert not list(cache.glob("_staging/*/*.parquet"))  # every file was published (renamed out of staging)


def test_second_run_takes_every_unit_from_the_cache_with_identical_verdicts(two_runs):
    root, _, cache, _, second = two_runs
    assert second.status == "succeeded", second.accounting_problems
    made = second.totals["units_made"]
    assert second.totals["units_from_cache"] == made == second.totals["verdicts_written"]
    per_tenant = {t: c.get("units_from_cache", 0) for t, c in second.per_tenant.items()}
    assert per_tenant == {t: c["units_made"] for t, c in second.per_tenant.items()}
    night1, night2 = verdict_rows(root / "out-1"), verdict_rows(root / "out-2")
    assert night1.keys() == night2.keys()
    for key, row in night2.items():
        assert row["from_cache"]
        assert {c: row[c] for c in JUDGED} == {c: night1[key][c] for c in JUDGED}
        assert row["run_id"] == "night-2"
    assert sorted(r["deduplicated"] for r in night2.values()) == sorted(r["deduplicated"] for r in night1.values())
    # nothing new was judged, so nothing was appended
    assert {e["run_id"] for e in load_cache(str(cache))} == {"night-1"}
    assert manifest(root / "out-2", "night-2")["totals"]["units_from_cache"] == made


def test_other_judging_settings_do_not_hit_the_cache(two_runs):
    root, log, cache, _, _ = two_runs
    forced = moderate(root / "out-forced", log, cache, "night-forced", "--verdict-mode", "forced")
    assert forced.totals.get("units_from_cache", 0) == 0
    assert not any(r["from_cache"] for r in verdict_rows(root / "out-forced").values())
    # its judgements were appended under their own settings key, beside night 1's
    assert {e["run_id"] for e in load_cache(str(cache))} == {"night-1", "night-forced"}


def test_decision_settings_still_apply_to_cached_judgements(tmp_path):
    log, cache = tmp_path / "night.parquet", tmp_path / "cache"
    write_canonical(generate_conversations(40, seed=3), log)
    moderate(tmp_path / "out-1", log, cache, "night-1", "--verdict-mode", "auto")
    strict = moderate(
        tmp_path / "out-strict", log, cache, "night-strict", "--verdict-mode", "auto", "--threshold", "0.05"
    )
    assert strict.totals["units_from_cache"] == strict.totals["units_made"]
    rows = verdict_rows(tmp_path / "out-strict").values()
    # the fake engine's P(unsafe) is 0.1 or 0.9: with a 0.05 threshold every boxed verdict is unsafe
    assert all(r["verdict"] == "unsafe" for r in rows if r["p_unsafe"] is not None)


@pytest.mark.parametrize(
    ("spec", "first", "second"),
    [
        # the band decides which units are reasoned: a wider band must not be served the first night's scores
        (FakeEngineSpec(), (), ("--cascade-band", "0.0,1.0")),
        # with a decision head the threshold decides which units get a trace
        (FakeEngineSpec(head_version="h1"), ("--threshold", "0.95"), ()),
        # with the categories template it decides which units are asked for categories
        (
            FakeEngineSpec(),
            ("--template", "rsafe-categories", "--threshold", "0.95"),
            ("--template", "rsafe-categories"),
        ),
    ],
)
def test_cascade_settings_that_change_the_judgement_miss_the_cache(tmp_path, spec, first, second):
    log, cache = tmp_path / "night.parquet", tmp_path / "cache"
    write_canonical(generate_conversations(40, seed=3), log)
    common = ["--engine", "fake", "--input", str(log), "--verdict-cache", str(cache), "--verdict-mode", "cascade"]
    run([*common, "--output", str(tmp_path / "out-1"), "--run-id", "n1", *first], engine_spec=spec)
    again = run([*common, "--output", str(tmp_path / "out-2"), "--run-id", "n2", *second], engine_spec=spec)
    run([*common[:4], "--output", str(tmp_path / "out-3"), "--run-id", "n3", "--verdict-mode", "cascade",
                 *second], engine_spec=spec)  # fmt: skip
    assert again.totals.get("units_from_cache", 0) == 0
    night2, uncached = verdict_rows(tmp_path / "out-2"), verdict_rows(tmp_path / "out-3")
    judged = ("verdict_source", "reasoning", "categories", "completion_tokens")
    assert {k: [r[c] for c in judged] for k, r in night2.items()} == {
        k: [r[c] for c in judged] for k, r in uncached.items()
    }


def test_new_content_is_judged_and_appended(two_runs, tmp_path):
    _, _, cache, _, _ = two_runs
    log = tmp_path / "new.parquet"
    write_canonical(generate_conversations(10, seed=99) + generate_conversations(30, seed=3)[:5], log)
    before = len(cache_files(str(cache)))
    result = moderate(tmp_path / "out", log, cache, "night-3")
    assert 0 < result.totals["units_from_cache"] < result.totals["units_made"]
    assert len(cache_files(str(cache))) > before
    assert "night-3" in {e["run_id"] for e in load_cache(str(cache))}


def test_settings_key_covers_judging_not_deciding():
    context = RunContext("r", "m", JudgeSettings())
    same = [
        dataclasses.replace(context, run_id="other"),
        dataclasses.replace(context, settings=JudgeSettings(threshold=0.3, review_band=(0.4, 0.6))),
        dataclasses.replace(context, settings=JudgeSettings(cascade_band=(0.1, 0.9))),  # no cascade: no band
    ]
    different = [
        dataclasses.replace(context, model="m2"),
        dataclasses.replace(context, settings=JudgeSettings(verdict_mode="forced")),
        dataclasses.replace(context, settings=JudgeSettings(sampling=SamplingSettings(max_tokens=64))),
        dataclasses.replace(context, settings=JudgeSettings(reasoning_budget=64)),
        dataclasses.replace(context, settings=JudgeSettings(extract_categories=True)),
    ]
    cascade = dataclasses.replace(context, settings=JudgeSettings(verdict_mode="cascade"))
    for changed in (JudgeSettings(verdict_mode="cascade", threshold=0.9),
                    JudgeSettings(verdict_mode="cascade", cascade_band=(0.1, 0.9))):  # fmt: skip
        assert settings_key(dataclasses.replace(cascade, settings=changed)) != settings_key(cascade)
    categories = dataclasses.replace(context, settings=JudgeSettings(extract_categories=True))
    stricter = dataclasses.replace(categories, settings=JudgeSettings(extract_categories=True, threshold=0.9))
    assert settings_key(stricter) != settings_key(categories)
    key = settings_key(context)
    assert all(settings_key(c) == key for c in same)
    assert all(settings_key(c) != key for c in different)


def test_cache_entry_round_trips_a_judgement():
    unit = ModerationUnit(
        conversation_id="c1", tenant_id="acme-kids", date="2026-11-26", unit="prompt", turn_index=0,
        policy_id="kids-learning", policy_version="v", template_version="rsafe-v1", prompt="p",
        truncated_input=False, context_turns_dropped=0, source_file="f.parquet", source_rows=1,
    )  # fmt: skip
    judgement = Judgement("unsafe", "model", 0.8, "because", "<think>because</think>\\boxed{unsafe}", "stop",
                          120, 9, 256, ("S1",), ("X9",))  # fmt: skip
    context = RunContext("r", "m", JudgeSettings())
    row = verdict_row(unit, judgement, context, dt.datetime.now(dt.UTC), deduplicated=False)
    entry = cache_row(row, "k", dt.datetime.now(dt.UTC))
    assert set(entry) == set(CACHE_SCHEMA.names)
    assert judgement_from_entry(entry) == judgement
    assert "from_cache" in VERDICT_SCHEMA.names and row["from_cache"] is False
