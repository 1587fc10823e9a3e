"""Large files read as several row-group ranges: every row read once, the accounting as for whole files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from scripts.generate_sample_logs import CANONICAL_SCHEMA, write_turn_rows
from transforms.io.file_splits import FileSplit, plan_splits, row_group_ranges
from transforms.io.read_logs import CONVERSATIONS, DEAD_LETTER, ReadConversations, read_conversations_from_file
from transforms.records import Conversation, DeadLetter

T0 = dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC)


def _open_local(path: str):
    return open(path, "rb")  # plan_splits closes it


def _rows(n: int) -> list[dict]:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    return [
        {"conversation_id": f"c{i}", "tenant_id": "globex", "created_at": T0, "messages": messages} for i in range(n)
    ]


def _ten_groups(path: Path, rows: int = 100) -> Path:
    pq.write_table(pa.Table.from_pylist(_rows(rows), schema=CANONICAL_SCHEMA), path, row_group_size=rows // 10)
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    return path


@pytest.mark.parametrize(
    ("groups", "split_rows", "ranges"),
    [
        ([10] * 10, 25, [(0, 3), (3, 6), (6, 9), (9, 10)]),
        ([10] * 10, 10, [(i, i + 1) for i in range(10)]),
        ([10] * 10, 1000, [(0, 10)]),
        ([5, 500, 5], 100, [(0, 2), (2, 3)]),
        ([], 10, []),
    ],
)
def test_row_group_ranges(groups: list[int], split_rows: int, ranges: list[tuple[int, int]]) -> None:
    assert row_group_ranges(groups, split_rows) == ranges


def test_a_ten_row_group_file_is_read_in_splits_with_every_row_once(tmp_path: Path) -> None:
    path = str(_ten_groups(tmp_path / "big.parquet"))
    splits = plan_splits(path, _open_local, split_rows=30)
    assert len(splits) >= 2 and all(s.row_groups for s in splits)
    read = [c for s in splits for c in read_conversations_from_file(path, row_groups=s.row_groups)]
    assert all(isinstance(c, Conversation) for c in read)
    assert sorted(c.source_row for c in read) == list(range(100))
    assert sorted(c.conversation_id for c in read) == sorted(f"c{i}" for i in range(100))


def test_files_that_are_not_split(tmp_path: Path) -> None:
    small = _ten_groups(tmp_path / "small.parquet")
    assert plan_splits(str(small), _open_local, split_rows=1000) == [FileSplit(str(small))]
    turns = tmp_path / "turns.parquet"
    write_turn_rows(_rows(50), turns)
    assert plan_splits(str(turns), _open_local, split_rows=1) == [FileSplit(str(turns))]
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    assert plan_splits(str(broken), _open_local, split_rows=1) == [FileSplit(str(broken))]
    no_tenant = tmp_path / "no-tenant.parquet"
    pq.write_table(pq.read_table(small).drop_columns(["tenant_id"]), no_tenant, row_group_size=10)
    assert plan_splits(str(no_tenant), _open_local, split_rows=1) == [FileSplit(str(no_tenant))]


def test_a_corrupt_row_group_dead_letters_only_its_split(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    table = pa.Table.from_pylist(_rows(100), schema=CANONICAL_SCHEMA)
    pq.write_table(table, path, row_group_size=10, compression="none", use_dictionary=False)
    offset = pq.ParquetFile(path).metadata.row_group(4).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    items = [
        i
        for s in plan_splits(str(path), _open_local, 20)
        for i in read_conversations_from_file(str(path), row_groups=s.row_groups)
    ]
    dead = [i for i in items if isinstance(i, DeadLetter)]
    assert [(d.error_kind, d.rows) for d in dead] == [("unreadable_file", 20)]
    assert "rows 40..59" in dead[0].message
    assert sum(1 for i in items if isinstance(i, Conversation)) + dead[0].rows == 100


def test_the_transform_splits_large_files_on_the_shuffle_path(tmp_path: Path) -> None:
    _ten_groups(tmp_path / "big.parquet")
    write_turn_rows([{**r, "conversation_id": f"t{i}"} for i, r in enumerate(_rows(3))], tmp_path / "turns.parquet")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | ReadConversations([str(tmp_path / "*.parquet")], split_rows=20)
        ids = result[CONVERSATIONS] | "Ids" >> beam.Map(lambda c: c.conversation_id)
        assert_that(ids, equal_to([f"c{i}" for i in range(100)] + ["t0", "t1", "t2"]), label="ids")
        assert_that(result[DEAD_LETTER], equal_to([]), label="dead")
    files_read = p.result.metrics().query(MetricsFilter().with_namespace("read_logs").with_name("files"))
    assert sum(c.committed for c in files_read["counters"]) == 5 + 1  # 5 splits of the big file, the turn file
