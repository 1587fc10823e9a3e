"""The streaming path (`--dedup worker`): on-disk indexes, the judgement memo, the batcher, and the pipeline shape."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.job.moderate import build_pipeline, plan_job, resolve_dedup
from pipelines.job.options import ModerationOptions
from scripts.generate_sample_logs import generate_conversations, write_canonical
from transforms.io.write_partitions import publish_table
from transforms.judging.batching import BatchPerKeyDoFn
from transforms.judging.decisions import Judgement
from transforms.judging.judgement_memo import JudgementMemo
from transforms.judging.verdict_cache import VerdictCache, cache_row, settings_key
from transforms.stores.disk_index import DiskIndex, release_indexes, shared_index

GROUP_BY_KEY_URN = "beam:transform:group_by_key:v1"
FLATTEN_URN = "beam:transform:flatten:v1"


def judgement(answer: str) -> Judgement:
    return Judgement(
        outcome=answer,
        verdict_source="boxed",
        p_unsafe=None,
        reasoning="r",
        raw_output=f"\\boxed{{{answer}}}",
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=3,
        token_budget=64,
    )


# --- DiskIndex -------------------------------------------------------------------------------------------------------


def test_disk_index_add_returns_what_was_stored_first():
    index = DiskIndex()
    assert index.add("c1", b"file-a\x1f3") is None
    assert index.add("c1", b"file-b\x1f9") == b"file-a\x1f3"
    assert index.get("c1") == b"file-a\x1f3"
    assert index.get("nope") is None
    index.put("c1", b"replaced")
    assert index.get("c1") == b"replaced"
    assert len(index) == 1
    index.close()


def test_disk_index_holds_more_than_its_page_cache():
    index = DiskIndex()
    for i in range(20_000):
        index.add(f"key-{i}", b"x" * 200)  # ~4 MB of values, above SQLite's default 2 MB page cache
    assert len(index) == 20_000
    assert index.get("key-0") == b"x" * 200 and index.get("key-19999") == b"x" * 200
    index.close()


def test_shared_index_is_one_per_run_and_name_filled_once_and_released():
    fills = []
    first = shared_index("run-si", "names", fill=lambda index: fills.append(index))
    again = shared_index("run-si", "names", fill=lambda index: fills.append(index))
    other = shared_index("run-si-2", "names")
    assert first is again and first is not other and fills == [first]
    release_indexes("run-si")
    assert shared_index("run-si", "names") is not first
    release_indexes("run-si")
    release_indexes("run-si-2")


# --- JudgementMemo -------------------------------------------------------------------------------------------------


def test_memo_recalls_this_runs_judgements_as_duplicates():
    memo = JudgementMemo("run-memo-1")
    assert memo.recall("k") is None
    memo.remember("k", judgement("safe"))
    recalled = memo.recall("k")
    assert recalled.judgement == judgement("safe")
    assert (recalled.from_cache, recalled.used_before) == (False, True)
    release_indexes("run-memo-1")


def test_memo_starts_from_the_verdict_cache_earliest_entry_first_use_not_a_duplicate(tmp_path):
    from transforms.judging.decisions import JudgeSettings
    from transforms.judging.run_context import RunContext

    context = RunContext("run-memo-2", "m", JudgeSettings())
    key = settings_key(context)
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def entry(answer: str, run: str, when: dt.datetime, skey: str = key) -> dict:
        row = {"content_key": "k", "policy_version": "v", "run_id": run, "categories": [], "unknown_categories": []}
        row.update({name: getattr(judgement(answer), name) for name in ("outcome", "verdict_source", "p_unsafe")})
        row.update(
            {
                name: getattr(judgement(answer), name)
                for name in ("reasoning", "raw_output", "finish_reason", "prompt_tokens", "completion_tokens")
            }
        )
        row["token_budget"] = 64
        return cache_row(row, skey, when)

    import pyarrow as pa

    from transforms.judging.verdict_cache import CACHE_SCHEMA

    later = pa.Table.from_pylist([entry("unsafe", "night-2", t0 + dt.timedelta(days=1))], schema=CACHE_SCHEMA)
    earlier = pa.Table.from_pylist([entry("safe", "night-1", t0)], schema=CACHE_SCHEMA)
    other_settings = pa.Table.from_pylist([entry("unsafe", "night-0", t0, skey="other")], schema=CACHE_SCHEMA)
    files = [publish_table(t, str(tmp_path), f"n{i}", str(tmp_path)) for i, t in enumerate([later, earlier])]
    files.append(publish_table(other_settings, str(tmp_path), "n9", str(tmp_path)))
    memo = JudgementMemo("run-memo-2", VerdictCache(str(tmp_path), key, tuple(files)))
    first = memo.recall("k")
    assert first.judgement.outcome == "safe"  # the earliest entry of this run's settings
    assert (first.from_cache, first.used_before) == (True, False)
    second = memo.recall("k")
    assert (second.from_cache, second.used_before) == (True, True)
    release_indexes("run-memo-2")


# --- BatchPerKeyDoFn -----------------------------------------------------------------------------------------------


def run_batcher(elements: list[tuple[str, int]], batch_size: int) -> list[list[int]]:
    batcher = BatchPerKeyDoFn(batch_size)
    batcher.start_bundle()
    batches = [batch for element in elements for batch in batcher.process(element)]
    return batches + [wv.value for wv in batcher.finish_bundle()]


def test_batcher_full_batches_hold_one_key_and_flow_at_once():
    elements = [("b", 1), ("a", 2), ("b", 3), ("b", 4), ("a", 5)]
    batcher = BatchPerKeyDoFn(3)
    batcher.start_bundle()
    assert [list(batcher.process(e)) for e in elements] == [[], [], [], [[1, 3, 4]], []]


def test_batcher_tail_is_emitted_in_key_order_in_full_batches():
    elements = [("b", 1), ("a", 2), ("c", 3), ("b", 4), ("a", 5), ("b", 6), ("b", 7)]
    assert run_batcher(elements, 3) == [[1, 4, 6], [2, 5, 7], [3]]  # tail: a 2 5, b 7, c 3
    assert run_batcher([], 3) == []


# --- choosing and building the path --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "worker"),
        (["--runner", "DirectRunner"], "worker"),
        (["--direct_num_workers", "2"], "shuffle"),
        (["--runner", "DataflowRunner"], "shuffle"),
        (["--runner", "FlinkRunner", "--dedup", "worker"], "worker"),
        (["--dedup", "shuffle"], "shuffle"),
    ],
)
def test_dedup_auto_streams_only_on_the_single_worker_local_runner(args, expected):
    assert resolve_dedup(PipelineOptions(args)) == expected


def transforms_of(tmp_path: Path, dedup: str, urn: str) -> list[str]:
    log = tmp_path / "in" / "logs.parquet"
    write_canonical(generate_conversations(5, seed=1), log)
    argv = ["--input", str(log), "--output", str(tmp_path / "out"), "--engine", "fake", "--dedup", dedup]
    options = PipelineOptions(argv)
    plan = plan_job(options.view_as(ModerationOptions))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, plan)
    transforms = pipeline.to_runner_api().components.transforms.values()
    return [t.unique_name for t in transforms if t.spec.urn == urn]


def test_worker_dedup_builds_no_group_by_key_or_flatten_so_the_in_process_runner_streams(tmp_path):
    # the FnApiRunner holds in memory whatever crosses a GroupByKey or a Flatten
    assert transforms_of(tmp_path, "worker", GROUP_BY_KEY_URN) == []
    assert transforms_of(tmp_path, "worker", FLATTEN_URN) == []


def test_shuffle_dedup_groups_conversation_ids_and_identical_units(tmp_path):
    names = transforms_of(tmp_path, "shuffle", GROUP_BY_KEY_URN)
    assert any("GroupById" in n for n in names) and any("GroupIdentical" in n for n in names)
