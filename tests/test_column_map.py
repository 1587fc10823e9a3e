"""Tests for `--column-map`: parsing, reading logs under their own column names, the up-front schema check."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.job import exit_codes
from pipelines.job.moderate import run
from transforms.io.column_map import ColumnMapError, check_column_map, mapped_schema, parse_column_map
from transforms.io.read_logs import read_conversations_from_file, read_file_schema
from transforms.records import Conversation, DeadLetter

T0 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
MAP = "conversation_id=id,tenant_id=org,created_at=ts,messages=conversation"


def _own_canonical(path: Path, n: int = 2) -> Path:
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    table = pa.table(
        {
            "id": [f"c{i}" for i in range(n)],
            "org": ["globex"] * n,
            "ts": [T0] * n,
            "conversation": [messages] * n,
            "tenant_id": ["not-this-one"] * n,  # a column with the job's name, shadowed by the mapped one
        }
    )
    pq.write_table(table, path)
    return path


def _own_turns(path: Path) -> Path:
    table = pa.table(
        {
            "thread": ["t1", "t1"],
            "tenant_id": ["globex"] * 2,
            "created_at": [T0] * 2,
            "seq": [0, 1],
            "speaker": ["human", "gpt"],
            "text": ["hello", "hi"],
        }
    )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("conversation_id=id", {"conversation_id": "id"}),
        (" tenant_id = org , messages=conversation,", {"tenant_id": "org", "messages": "conversation"}),
        (["conversation_id=id", "tenant_id=org"], {"conversation_id": "id", "tenant_id": "org"}),
        ("role=speaker,content=text,turn_index=seq", {"role": "speaker", "content": "text", "turn_index": "seq"}),
    ],
)
def test_parse_column_map(text, expected) -> None:
    assert parse_column_map(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conversation_id", "expected NAME=SOURCE_COLUMN"),
        ("=id", "expected NAME=SOURCE_COLUMN"),
        ("conversation_id=", "expected NAME=SOURCE_COLUMN"),
        ("chat_id=id", "'chat_id' is not one of"),
        ("conversation_id=a,conversation_id=b", "maps 'conversation_id' twice"),
        ("conversation_id=x,tenant_id=x", "maps column 'x' to several names"),
    ],
)
def test_parse_column_map_errors_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ColumnMapError, match=message):
        parse_column_map(text)


def test_mapped_schema_renames_and_shadows() -> None:
    schema = pa.schema([("id", pa.string()), ("tenant_id", pa.string()), ("org", pa.string())])
    assert mapped_schema(schema, {"conversation_id": "id", "tenant_id": "org"}).names == [
        "conversation_id",
        "tenant_id",
    ]
    assert mapped_schema(schema, {}) is schema


def test_canonical_file_read_under_its_own_column_names(tmp_path: Path) -> None:
    path = _own_canonical(tmp_path / "own.parquet")
    items = list(read_conversations_from_file(str(path), column_map=parse_column_map(MAP)))
    assert all(isinstance(i, Conversation) for i in items)
    assert [(c.conversation_id, c.tenant_id, c.created_at) for c in items] == [
        ("c0", "globex", T0),
        ("c1", "globex", T0),
    ]
    assert [m.role for m in items[0].messages] == ["user", "assistant"]


def test_turn_file_read_under_its_own_column_names(tmp_path: Path) -> None:
    path = _own_turns(tmp_path / "turns.parquet")
    mapping = parse_column_map("conversation_id=thread,turn_index=seq,role=speaker,content=text")
    (conversation,) = read_conversations_from_file(str(path), column_map=mapping)
    assert isinstance(conversation, Conversation) and conversation.source_rows == 2
    assert [(m.role, m.content) for m in conversation.messages] == [("user", "hello"), ("assistant", "hi")]
    assert {e.split(":")[0] for e in conversation.input_repairs} == {"role_alias"}


def test_schema_problems_of_mapped_files_are_dead_letters_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "no-ts.parquet"
    pq.write_table(pq.read_table(_own_canonical(tmp_path / "src.parquet")).drop_columns(["org", "tenant_id"]), path)
    mapping = parse_column_map("conversation_id=id,created_at=ts,messages=conversation")
    (letter,) = read_conversations_from_file(str(path), column_map=mapping)
    assert isinstance(letter, DeadLetter) and letter.error_kind == "missing_column"
    assert "column 'tenant_id' is missing" in letter.message and letter.rows == 2
    pq.write_table(pq.read_table(tmp_path / "src.parquet").set_column(2, "ts", pa.array([1, 2])), path)
    (letter,) = read_conversations_from_file(str(path), column_map=mapping)
    assert letter.error_kind == "wrong_column_type" and "column 'ts (created_at)'" in letter.message


def test_check_column_map_names_the_file_and_the_missing_column(tmp_path: Path) -> None:
    good = _own_canonical(tmp_path / "a.parquet")
    bad = tmp_path / "b.parquet"
    pq.write_table(pq.read_table(good).rename_columns(["id", "organisation", "ts", "conversation", "tenant_id"]), bad)
    (tmp_path / "c.parquet").write_text("not parquet")  # left to the read step (a dead letter)
    paths = [str(good), str(bad), str(tmp_path / "c.parquet")]
    check_column_map(paths[:1] + paths[2:], parse_column_map(MAP), read_file_schema)
    with pytest.raises(ColumnMapError) as caught:
        check_column_map(paths, parse_column_map(MAP), read_file_schema)
    assert str(bad) in str(caught.value) and "'org' (mapped to tenant_id" in str(caught.value)
    assert "organisation" in str(caught.value)  # the file's columns are listed


def test_turn_names_are_not_required_of_canonical_files(tmp_path: Path) -> None:
    path = _own_canonical(tmp_path / "a.parquet")
    check_column_map([str(path)], parse_column_map(MAP + ",role=speaker,content=text"), read_file_schema)


def test_the_job_reads_mapped_columns_and_fails_fast_on_a_missing_one(tmp_path: Path) -> None:
    path = _own_canonical(tmp_path / "own.parquet")
    argv = ["--engine", "fake", "--input", str(path), "--run-id", "r1"]
    manifest = run([*argv, "--output", str(tmp_path / "out"), "--column-map", MAP])
    assert manifest.status == "succeeded" and manifest.totals["rows_to_units"] == 2
    assert manifest.per_tenant["globex"]["verdicts_written"] == 4
    with pytest.raises(ColumnMapError, match="'org_id' \\(mapped to tenant_id") as caught:
        run([*argv, "--output", str(tmp_path / "out2"), "--column-map", MAP.replace("org", "org_id")])
    assert exit_codes.exit_code_for(caught.value) == exit_codes.USAGE
    assert not (tmp_path / "out2").exists()  # checked before anything was written
