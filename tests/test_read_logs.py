"""Tests for reading conversation logs: layouts, validation, dead letters, accounting, the Beam transform."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from scripts.generate_malformed_logs import MalformedCase, malformed_cases, write_malformed_corpus
from scripts.generate_sample_logs import (
    CANONICAL_SCHEMA,
    TURN_SCHEMA,
    generate_conversations,
    sample_conversations,
    write_canonical,
    write_samples,
    write_turn_rows,
)
from transforms.io import read_logs
from transforms.io.log_schema import CANONICAL, ERROR_KINDS, TURN_PER_ROW, detect_layout
from transforms.io.read_logs import (
    CONVERSATIONS,
    DEAD_LETTER,
    DUPLICATES,
    SKIPPED,
    InputError,
    ReadConversations,
    count_rows_in_file,
    match_input_files,
    read_conversations_from_file,
)
from transforms.records import Conversation, DeadLetter

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples" / "logs"
UTC = dt.UTC


def _read(path: Path | str) -> tuple[list[Conversation], list[DeadLetter]]:
    items = list(read_conversations_from_file(str(path)))
    conversations = [i for i in items if isinstance(i, Conversation)]
    return conversations, [i for i in items if isinstance(i, DeadLetter)]


def _accounted_rows(conversations: list[Conversation], dead_letters: list[DeadLetter]) -> int:
    return sum(c.source_rows for c in conversations) + sum(d.rows for d in dead_letters)


def _conversation(cid: str, created_at: dt.datetime, tenant: str = "globex") -> dict:
    messages = [{"role": "user", "content": f"question {cid}"}, {"role": "assistant", "content": "answer"}]
    return {"conversation_id": cid, "tenant_id": tenant, "created_at": created_at, "messages": messages}


# --- layouts and the sample logs ------------------------------------------------------------------------


def test_detect_layout_from_column_names() -> None:
    assert detect_layout(CANONICAL_SCHEMA) == CANONICAL
    assert detect_layout(TURN_SCHEMA) == TURN_PER_ROW
    assert detect_layout(pa.schema([("conversation_id", pa.string())])) == CANONICAL  # reported as missing
    both = TURN_SCHEMA.append(pa.field("messages", CANONICAL_SCHEMA.field("messages").type))
    assert detect_layout(both) == CANONICAL


@pytest.mark.parametrize(
    ("file_name", "conversations", "rows"),
    [
        ("conversations-2026-11-26.parquet", 16, 16),
        ("conversations-2026-11-27.parquet", 15, 15),
        ("turns-2026-11-27.parquet", 10, 28),
    ],
)
def test_sample_logs_read_cleanly(file_name: str, conversations: int, rows: int) -> None:
    path = SAMPLES / file_name
    read, dead = _read(path)
    assert dead == []
    assert len(read) == conversations
    assert count_rows_in_file(str(path)) == rows == _accounted_rows(read, dead)
    assert {c.tenant_id for c in read} <= {"acme-kids", "medcare", "redteam-labs", "globex"}
    assert all(c.created_at.tzinfo is not None and c.created_at.utcoffset() == dt.timedelta(0) for c in read)


def test_samples_are_up_to_date_and_varied(tmp_path: Path) -> None:
    for path in write_samples(tmp_path):
        assert pq.read_table(path).equals(pq.read_table(SAMPLES / path.name)), f"regenerate {path.name}"
    everything = [row for rows in sample_conversations().values() for row in rows]
    assert {row["tenant_id"] for row in everything} == {"acme-kids", "medcare", "redteam-labs", "globex"}
    assert {row["created_at"].date() for row in everything} == {dt.date(2026, 11, 26), dt.date(2026, 11, 27)}
    assert any(row["messages"][-1]["role"] == "user" for row in everything)
    assert any(row["messages"][0]["role"] == "system" for row in everything)
    assert any(sum(m["role"] == "user" for m in row["messages"]) > 1 for row in everything)
    assert max(len(m["content"]) for row in everything for m in row["messages"]) < 400


def test_turn_rows_are_grouped_ordered_and_counted() -> None:
    read, _ = _read(SAMPLES / "turns-2026-11-27.parquet")
    first = read[0]
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert first.source_row == 0 and first.source_rows == len(first.messages) == 3
    assert first.created_at == dt.datetime(2026, 11, 27, 8, 5, tzinfo=UTC)  # min over its rows
    assert read[1].source_row == 3


# --- the malformed corpus ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("malformed")
    write_malformed_corpus(out_dir)
    return out_dir


def test_corpus_covers_every_read_error_kind(tmp_path: Path) -> None:
    cases = write_malformed_corpus(tmp_path)
    assert len(cases) >= 30
    assert len({c.file_name for c in cases}) == len(cases)
    assert {c.error_kind for c in cases} - {None} == set(ERROR_KINDS) - {"duplicate_conversation_id"}


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "tolerant"])
@pytest.mark.parametrize("case", malformed_cases(), ids=lambda case: case.file_name)
def test_malformed_case(case: MalformedCase, strict: bool, corpus_dir: Path) -> None:
    path = corpus_dir / case.file_name
    original, case = case, case if strict else case.tolerant()
    items = list(read_conversations_from_file(str(path), strict=strict))
    read = [i for i in items if isinstance(i, Conversation)]
    dead = [i for i in items if isinstance(i, DeadLetter)]
    assert len(read) == case.good_conversations
    if case.error_kind is None:
        assert dead == []
    else:
        assert [d.error_kind for d in dead] == [case.error_kind]
        letter = dead[0]
        assert letter.stage == ("read" if case.error_kind == "unreadable_file" else "validate")
        assert letter.source_file == str(path)
        assert str(path) in letter.message and case.field in letter.message
        assert letter.conversation_id == case.bad_conversation_id
        assert letter.row == case.bad_row
        if case.bad_row is not None:
            assert re.search(r": row \d+", letter.message)
        elif case.rows is not None:
            assert re.search(r"rows", letter.message)
    if case.rows is None:
        assert [d.rows for d in dead] == [0]
    else:
        assert _accounted_rows(read, dead) == case.rows
    if case.error_kind is not None:
        assert all(c.conversation_id.startswith("good") for c in read)
    if not strict and (original.repair or original.tolerant_reads):
        (repaired,) = [c for c in read if c.conversation_id == original.bad_conversation_id]
        kinds = {entry.split(":")[0] for entry in repaired.input_repairs}
        assert kinds == ({original.repair} if original.repair else set())
        assert all(not c.input_repairs for c in read if c is not repaired)
    if strict:
        assert all(not c.input_repairs for c in read)


# --- timestamps --------------------------------------------------------------------------------------------


def _created_at_table(created_at: pa.Array) -> pa.Table:
    rows = [_conversation(f"c{i}", dt.datetime(2026, 1, 1, tzinfo=UTC)) for i in range(len(created_at))]
    return pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA).set_column(2, "created_at", created_at)


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        (
            pa.array([dt.datetime(2026, 11, 26, 23, 30)], pa.timestamp("us")),
            dt.datetime(2026, 11, 26, 23, 30),
        ),
        (
            pa.array([dt.datetime(2026, 11, 26, 23, 30)], pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("ms", tz="America/New_York")
            ),
            dt.datetime(2026, 11, 26, 23, 30),
        ),
        (
            pa.array([1_795_735_800_123_456_789], pa.timestamp("ns")),
            dt.datetime(2026, 11, 26, 23, 30, 0, 123456),
        ),
        (pa.array(["2026-11-27T00:30:00+01:00"]), dt.datetime(2026, 11, 26, 23, 30)),
        (pa.array(["2026-11-26T23:30:00Z"]), dt.datetime(2026, 11, 26, 23, 30)),
        (pa.array(["2026-11-26 23:30"]), dt.datetime(2026, 11, 26, 23, 30)),
    ],
    ids=["naive-us", "new-york-ms", "naive-ns", "iso-offset", "iso-z", "iso-naive"],
)
def test_created_at_becomes_utc(tmp_path: Path, created_at: pa.Array, expected: dt.datetime) -> None:
    path = tmp_path / "tz.parquet"
    pq.write_table(_created_at_table(created_at), path)
    (conversation,), dead = _read(path)
    assert dead == []
    assert conversation.created_at == expected.replace(tzinfo=UTC)
    assert conversation.created_at.utcoffset() == dt.timedelta(0)
    assert conversation.date == expected.strftime("%Y-%m-%d")


# --- streaming, corruption mid-file, injected opener -------------------------------------------------------


def test_canonical_rows_keep_their_file_row_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_logs, "BATCH_ROWS", 3)
    rows = [_conversation(f"c{i}", dt.datetime(2026, 11, 26, tzinfo=UTC)) for i in range(10)]
    rows[4]["messages"] = []
    rows[7]["tenant_id"] = ""
    path = tmp_path / "batches.parquet"
    write_canonical(rows, path)
    read, dead = _read(path)
    assert [c.source_row for c in read] == [0, 1, 2, 3, 5, 6, 8, 9]
    assert [c.conversation_id for c in read] == [f"c{i}" for i in (0, 1, 2, 3, 5, 6, 8, 9)]
    assert [(d.row, d.error_kind) for d in dead] == [(4, "empty_messages"), (7, "missing_tenant_id")]


def test_corrupt_second_row_group_keeps_first_and_accounts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_logs, "BATCH_ROWS", 3)
    rows = [_conversation(f"c{i}", dt.datetime(2026, 11, 26, tzinfo=UTC)) for i in range(6)]
    path = tmp_path / "half-corrupt.parquet"
    table = pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA)
    pq.write_table(table, path, row_group_size=3, compression="none", use_dictionary=False)
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    read, dead = _read(path)
    assert [c.conversation_id for c in read] == ["c0", "c1", "c2"]
    assert [(d.error_kind, d.rows) for d in dead] == [("unreadable_file", 3)]
    assert "rows 3..5" in dead[0].message


def test_open_file_is_injectable_for_remote_paths() -> None:
    data = (SAMPLES / "conversations-2026-11-26.parquet").read_bytes()
    opened: list[str] = []

    def open_file(path: str) -> io.BytesIO:
        opened.append(path)
        return io.BytesIO(data)

    items = list(read_conversations_from_file("gs://bucket/logs/day.parquet", open_file=open_file))
    assert opened == ["gs://bucket/logs/day.parquet"]
    assert len(items) == 16 and all(i.source_file == "gs://bucket/logs/day.parquet" for i in items)


# --- matching input files ----------------------------------------------------------------------------------


def test_match_input_files_sorts_dedupes_and_expands_directories() -> None:
    expected = sorted(str(p) for p in SAMPLES.glob("*.parquet"))
    assert match_input_files([str(SAMPLES / "*.parquet"), str(SAMPLES / "turns-*.parquet")]) == expected
    assert match_input_files([str(SAMPLES)]) == expected


def test_match_input_files_names_the_pattern_that_matched_nothing(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing-*.parquet")
    with pytest.raises(InputError, match=re.escape(repr(missing))):
        match_input_files([str(SAMPLES / "*.parquet"), missing])
    with pytest.raises(InputError):
        match_input_files([])


# --- synthetic logs ----------------------------------------------------------------------------------------


def test_generate_conversations_is_deterministic_and_valid(tmp_path: Path) -> None:
    rows = generate_conversations(200, seed=7, duplicate_fraction=0.1)
    assert rows == generate_conversations(200, seed=7, duplicate_fraction=0.1)
    assert len(rows) == 200
    assert len({r["conversation_id"] for r in rows}) == 180
    write_canonical(rows, tmp_path / "synthetic.parquet")
    write_turn_rows(rows[:50], tmp_path / "synthetic-turns.parquet")
    read, dead = _read(tmp_path / "synthetic.parquet")
    assert dead == [] and len(read) == 200
    turns_read, turns_dead = _read(tmp_path / "synthetic-turns.parquet")
    # replays of one conversation in the same turn file collapse into duplicate_turn_index dead letters
    assert _accounted_rows(turns_read, turns_dead) == sum(len(r["messages"]) for r in rows[:50])


# --- the Beam transform ------------------------------------------------------------------------------------


def _pipeline_inputs(tmp_path: Path) -> str:
    day26, day27 = dt.datetime(2026, 11, 26, 9, tzinfo=UTC), dt.datetime(2026, 11, 27, 9, tzinfo=UTC)
    write_canonical([_conversation("dup", day26), _conversation("late", day27)], tmp_path / "a.parquet")
    write_canonical([_conversation("only-b", day26), _conversation("dup", day26, "medcare")], tmp_path / "b.parquet")
    write_turn_rows([_conversation("turns", day26)], tmp_path / "c.parquet")
    (tmp_path / "d.parquet").write_text("not parquet")
    return str(tmp_path / "*.parquet")


_A, _B, _C = (
    ("dup", "a.parquet", 1),
    ("only-b", "b.parquet", 1),
    ("turns", "c.parquet", 2),
)  # (id, file, rows)


@pytest.mark.parametrize(
    ("only_date", "kept", "skipped"),
    [("2026-11-26", [_A, _B, _C], ["late"]), (None, [_A, ("late", "a.parquet", 1), _B, _C], [])],
)
def test_read_conversations_transform(
    tmp_path: Path, only_date: str | None, kept: list[tuple], skipped: list[str]
) -> None:
    pattern = _pipeline_inputs(tmp_path)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = p | ReadConversations([pattern], only_date=only_date)
        conversations = result[CONVERSATIONS] | "Ids" >> beam.Map(
            lambda c: (c.conversation_id, Path(c.source_file).name, c.source_rows)
        )
        dead = (
            (result[DEAD_LETTER], result[DUPLICATES])
            | beam.Flatten()
            | "Kinds" >> beam.Map(lambda d: (d.error_kind, Path(d.source_file).name, d.rows))
        )
        skipped_ids = result[SKIPPED] | "SkippedIds" >> beam.Map(lambda c: c.conversation_id)
        assert_that(conversations, equal_to(kept), label="conversations")
        expected_dead = [("duplicate_conversation_id", "b.parquet", 1), ("unreadable_file", "d.parquet", 0)]
        assert_that(dead, equal_to(expected_dead), label="dead_letters")
        assert_that(skipped_ids, equal_to(skipped), label="skipped")


def test_read_conversations_fails_fast_on_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        ReadConversations([str(SAMPLES)], only_date="26/11/2026")
    with pytest.raises(InputError, match="matched no files"), beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | ReadConversations([str(tmp_path / "*.parquet")])


# --- content parts in files --------------------------------------------------------------------------------------


def test_content_parts_are_read_in_both_layouts_even_with_invalid_utf8(tmp_path: Path) -> None:
    part = pa.struct([("type", pa.binary()), ("text", pa.binary())])
    parts = pa.array([[{"type": b"text", "text": b"bad \xff"}, {"type": b"image_url", "text": None}]], pa.list_(part))
    parts = parts.view(pa.list_(pa.struct([("type", pa.string()), ("text", pa.string())])))
    messages = pa.StructArray.from_arrays([pa.array(["user"]), parts], names=["role", "content"])
    canonical = pa.table(
        {
            "conversation_id": ["p1"],
            "tenant_id": ["globex"],
            "created_at": pa.array([dt.datetime(2026, 11, 26, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "messages": pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()), messages),
        }
    )
    turns = pa.table(
        {
            "conversation_id": ["p2"],
            "tenant_id": ["globex"],
            "created_at": ["2026-11-26T00:00:00Z"],
            "turn_index": [0],
            "role": ["user"],
            "content": parts,
        }
    )
    for table in (canonical, turns):
        path = tmp_path / "parts.parquet"
        pq.write_table(table, path)
        (conversation,) = read_conversations_from_file(str(path))
        assert isinstance(conversation, Conversation), conversation
        assert [m.content for m in conversation.messages] == ["bad \ufffd\n[image]"]
        kinds = {entry.split(":")[0] for entry in conversation.input_repairs}
        assert kinds == {"invalid_utf8_replaced", "non_text_part_placeholder"}
        (strict,) = read_conversations_from_file(str(path), strict=True)
        assert isinstance(strict, DeadLetter) and strict.error_kind == "wrong_column_type"
