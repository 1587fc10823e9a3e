"""Write a corpus of malformed conversation-log files, each with a manifest entry saying what must happen.

    python scripts/generate_malformed_logs.py OUT_DIR

Each case is one small file: usually one bad conversation among good ones (so a test can check that the good
rows survive), or a whole bad file, plus a few valid edge cases (error_kind None). `error_kind` is what
`--strict-input` gives; by default message problems are repaired (`repair`: the bad conversation is read, with
that repair recorded), not problems at all (`tolerant_reads`: an assistant reply without a user message is
judged), or dead-lettered under another rule (`tolerant_error_kind`, `tolerant_field`).
Generated, not committed; the tests call `write_malformed_corpus(tmp_path)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

Text = str | bytes | None
_TEXT = pa.binary()  # built as binary then viewed as string, so invalid UTF-8 can be written
_MESSAGES = pa.list_(pa.struct([("role", _TEXT), ("content", _TEXT)]))
_STRING_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class MalformedCase:
    """One file of the corpus and what reading it must give."""

    file_name: str
    error_kind: str | None  # None: the file is valid (an edge case that must be accepted)
    good_conversations: int  # Conversations the file must still yield
    bad_conversation_id: str | None = None  # the dead letter's conversation_id (None: unknown or whole file)
    field: str | None = None  # text the dead letter's message must contain (the field or column)
    bad_row: int | None = None  # the dead letter's `row` (first row of the bad conversation)
    rows: int | None = None  # rows in the file, when its footer is readable (for the row accounting)
    description: str = ""
    repair: str | None = None  # tolerant reading: the bad conversation is read with this repair kind
    tolerant_reads: bool = False  # tolerant reading: the bad conversation is read (with `repair`, if any)
    tolerant_error_kind: str | None = None  # tolerant reading: dead-lettered with this kind instead of error_kind
    tolerant_field: str | None = None  # ... and this text in its message instead of `field`

    def tolerant(self) -> MalformedCase:
        """What reading the file without `--strict-input` must give."""
        if self.repair or self.tolerant_reads:
            return dataclasses.replace(
                self, error_kind=None, good_conversations=self.good_conversations + 1, bad_conversation_id=None
            )
        if self.tolerant_error_kind:
            return dataclasses.replace(self, error_kind=self.tolerant_error_kind, field=self.tolerant_field)
        return self


def _text(values: list[Text]) -> pa.Array:
    encoded = [v.encode() if isinstance(v, str) else v for v in values]
    return pa.array(encoded, _TEXT).view(pa.string())


def _good_messages(n: int = 1) -> list[dict]:
    return [{"role": "user", "content": f"Hello number {n}"}, {"role": "assistant", "content": "Hi there!"}]


def _messages(values: list[list[dict] | None]) -> pa.Array:
    encoded = [
        None
        if msgs is None
        else [None if m is None else {k: v.encode() if isinstance(v, str) else v for k, v in m.items()} for m in msgs]
        for msgs in values
    ]
    return pa.array(encoded, _MESSAGES).view(_STRING_MESSAGES)


def _canonical(bad: dict, position: int = 1, good: int = 2, **column_override: pa.Array) -> pa.Table:
    """`good` valid rows with the `bad` row's values (defaults: valid) inserted at `position`."""
    rows = [
        {
            "conversation_id": f"good-{i}",
            "tenant_id": "acme-kids",
            "created_at": _T0,
            "messages": _good_messages(i),
        }
        for i in range(good)
    ]
    base = {
        "conversation_id": "bad-1",
        "tenant_id": "acme-kids",
        "created_at": _T0,
        "messages": _good_messages(),
    }
    rows.insert(position, base | bad)
    columns = {
        "conversation_id": _text([r["conversation_id"] for r in rows]),
        "tenant_id": _text([r["tenant_id"] for r in rows]),
        "created_at": pa.array([r["created_at"] for r in rows], pa.timestamp("us", tz="UTC")),
        "messages": _messages([r["messages"] for r in rows]),
    }
    return pa.table(columns | column_override)


def _turns(rows: list[tuple], **column_override: pa.Array) -> pa.Table:
    """Turn-per-row table from (conversation_id, tenant_id, created_at, turn_index, role, content) tuples."""
    cid, tenant, created, index, role, content = (list(c) for c in zip(*rows, strict=True))
    columns = {
        "conversation_id": _text(cid),
        "tenant_id": _text(tenant),
        "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
        "turn_index": pa.array(index, pa.int32()),
        "role": _text(role),
        "content": _text(content),
    }
    return pa.table(columns | column_override)


def _good_turns(cid: str = "good-t") -> list[tuple]:
    return [
        (cid, "globex", _T0, 0, "user", "Where is my order?"),
        (cid, "globex", _T0, 1, "assistant", "Shipped."),
    ]


def _bad_turns(*turns: tuple) -> list[tuple]:
    """Rows of conversation 'bad-t' from (turn_index, role, content[, tenant_id[, created_at]])."""
    rows = []
    for index, role, content, *rest in turns:
        tenant = rest[0] if rest else "globex"
        created = rest[1] if len(rest) > 1 else _T0
        rows.append(("bad-t", tenant, created, index, role, content))
    return rows


def _corrupt_pages(table: pa.Table, path: Path) -> None:
    """Write `table`, then overwrite its first data page so the footer reads but the data does not."""
    pq.write_table(table, path, compression="none", use_dictionary=False)
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def _cases() -> list[tuple[MalformedCase, Callable[[Path], None] | pa.Table]]:
    """(case, table to write or a function writing the file) pairs."""
    c = MalformedCase
    naive = [_T0.replace(tzinfo=None)] * 3
    berlin = pa.array([_T0] * 3, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="Europe/Berlin"))
    good_turn_rows = _good_turns("good-a") + _good_turns("good-b")
    unsorted_turns = [good_turn_rows[1], good_turn_rows[3], good_turn_rows[0], good_turn_rows[2]]
    text_file = lambda p: p.write_text("conversation_id,tenant_id\nc1,acme-kids\n")  # noqa: E731
    empty_file = lambda p: p.write_bytes(b"")  # noqa: E731

    def truncated(p: Path) -> None:
        pq.write_table(_canonical({}), p)
        p.write_bytes(p.read_bytes()[:-40])

    # fmt: off
    return [
        # --- canonical layout: one bad row among two good ones (bad-1 at row 1) ---
        (c("id_null.parquet", "missing_conversation_id", 2, None, "conversation_id", 1, 3), _canonical({"conversation_id": None})),  # noqa: E501
        (c("id_empty.parquet", "missing_conversation_id", 2, None, "conversation_id", 1, 3), _canonical({"conversation_id": ""})),  # noqa: E501
        (c("id_whitespace.parquet", "missing_conversation_id", 2, None, "conversation_id", 1, 3), _canonical({"conversation_id": "  "})),  # noqa: E501
        (c("id_bad_utf8.parquet", "invalid_text", 2, None, "conversation_id", 1, 3), _canonical({"conversation_id": b"bad-\xff"})),  # noqa: E501
        (c("tenant_null.parquet", "missing_tenant_id", 2, "bad-1", "tenant_id", 1, 3), _canonical({"tenant_id": None})),
        (c("tenant_empty.parquet", "missing_tenant_id", 2, "bad-1", "tenant_id", 1, 3), _canonical({"tenant_id": ""})),
        (c("tenant_tab.parquet", "missing_tenant_id", 2, "bad-1", "tenant_id", 1, 3), _canonical({"tenant_id": "\t"})),
        (c("created_null.parquet", "invalid_created_at", 2, "bad-1", "created_at", 1, 3), _canonical({"created_at": None})),  # noqa: E501
        (c("created_garbage_string.parquet", "invalid_created_at", 2, "bad-1", "created_at", 1, 3), _canonical({}, created_at=pa.array(["2026-11-26T10:00:00Z", "yesterday at noon", "2026-11-26T11:00:00+01:00"]))),  # noqa: E501
        (c("created_impossible_date.parquet", "invalid_created_at", 2, "bad-1", "created_at", 1, 3), _canonical({}, created_at=pa.array(["2026-11-26", "2026-13-45T25:00:00", "2026-11-26 09:00"]))),  # noqa: E501
        (c("created_out_of_range.parquet", "invalid_created_at", 2, "bad-1", "created_at", 1, 3), _canonical({}, created_at=pa.array([1_790_000_000, 10**13, 1_790_000_000], pa.timestamp("s")))),  # noqa: E501
        (c("messages_empty_list.parquet", "empty_messages", 2, "bad-1", "messages", 1, 3), _canonical({"messages": []})),  # noqa: E501
        (c("messages_null.parquet", "empty_messages", 2, "bad-1", "messages", 1, 3), _canonical({"messages": None})),
        (c("role_tool.parquet", "unknown_role", 2, "bad-1", "messages[1].role", 1, 3, repair="tool_as_context"), _canonical({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}"}]})),  # noqa: E501
        (c("role_capitalised_space.parquet", "unknown_role", 2, "bad-1", "messages[0].role", 1, 3, repair="role_case"), _canonical({"messages": [{"role": "User ", "content": "hi"}]})),  # noqa: E501
        (c("role_null.parquet", "unknown_role", 2, "bad-1", "messages[0].role", 1, 3, tolerant_error_kind="no_user_turn", tolerant_field="messages"), _canonical({"messages": [{"role": None, "content": "hi"}]})),  # noqa: E501
        (c("message_null.parquet", "unknown_role", 2, "bad-1", "messages[1].role", 1, 3, repair="null_message_dropped"), _canonical({"messages": [{"role": "user", "content": "hi"}, None]})),  # noqa: E501
        (c("no_user_turn.parquet", "no_user_turn", 2, "bad-1", "messages", 1, 3, tolerant_reads=True), _canonical({"messages": [{"role": "system", "content": "Be nice."}, {"role": "assistant", "content": "Hello!"}]})),  # noqa: E501
        (c("content_null.parquet", "empty_content", 2, "bad-1", "messages[0].content", 1, 3, tolerant_error_kind="empty_content", tolerant_field="messages"), _canonical({"messages": [{"role": "user", "content": None}]})),  # noqa: E501
        (c("content_empty.parquet", "empty_content", 2, "bad-1", "messages[1].content", 1, 3, repair="empty_message_dropped"), _canonical({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]})),  # noqa: E501
        (c("content_whitespace.parquet", "empty_content", 2, "bad-1", "messages[0].content", 1, 3, tolerant_error_kind="empty_content", tolerant_field="messages"), _canonical({"messages": [{"role": "user", "content": " \n\t "}]})),  # noqa: E501
        (c("content_nul.parquet", "invalid_text", 2, "bad-1", "messages[0].content", 1, 3, repair="control_characters_removed"), _canonical({"messages": [{"role": "user", "content": "a\x00b"}]})),  # noqa: E501
        (c("content_lone_surrogate.parquet", "invalid_text", 2, "bad-1", "messages[0].content", 1, 3, repair="invalid_utf8_replaced"), _canonical({"messages": [{"role": "user", "content": b"half \xed\xa0\x80 pair"}]})),  # noqa: E501
        (c("content_bad_utf8.parquet", "invalid_text", 2, "bad-1", "messages[0].content", 1, 3, repair="invalid_utf8_replaced"), _canonical({"messages": [{"role": "user", "content": b"\xff\xfe"}]})),  # noqa: E501
        (c("bad_first_row.parquet", "missing_conversation_id", 2, None, "conversation_id", 0, 3), _canonical({"conversation_id": None}, position=0)),  # noqa: E501
        # --- whole-file problems ---
        (c("no_tenant_column.parquet", "missing_column", 0, None, "tenant_id", None, 3), _canonical({}).drop_columns(["tenant_id"])),  # noqa: E501
        (c("no_messages_column.parquet", "missing_column", 0, None, "messages", None, 3), _canonical({}).drop_columns(["messages"])),  # noqa: E501
        (c("created_int64.parquet", "wrong_column_type", 0, None, "created_at", None, 3), _canonical({}, created_at=pa.array([1, 2, 3]))),  # noqa: E501
        (c("messages_string.parquet", "wrong_column_type", 0, None, "messages", None, 3), _canonical({}, messages=pa.array(["hi", "hi", "hi"]))),  # noqa: E501
        (c("messages_no_content.parquet", "wrong_column_type", 0, None, "messages", None, 3), _canonical({}, messages=pa.array([[{"role": "user"}]] * 3))),  # noqa: E501
        (c("id_int64.parquet", "wrong_column_type", 0, None, "conversation_id", None, 3), _canonical({}, conversation_id=pa.array([1, 2, 3]))),  # noqa: E501
        (c("text_file.parquet", "unreadable_file", 0, None, "not a readable Parquet file", None, None), text_file),
        (c("zero_bytes.parquet", "unreadable_file", 0, None, "not a readable Parquet file", None, None), empty_file),
        (c("truncated.parquet", "unreadable_file", 0, None, "not a readable Parquet file", None, None), truncated),
        (c("corrupt_pages.parquet", "unreadable_file", 0, None, "corrupt data", None, 3), lambda p: _corrupt_pages(_canonical({}), p)),  # noqa: E501
        # --- valid edge cases ---
        (c("zero_rows.parquet", None, 0, rows=0, description="valid schema, no rows"), _canonical({}).slice(0, 0)),
        (c("created_tz_naive.parquet", None, 3, rows=3, description="tz-naive = UTC"), _canonical({}, created_at=pa.array(naive, pa.timestamp("ns")))),  # noqa: E501
        (c("created_tz_berlin.parquet", None, 3, rows=3, description="converted to UTC"), _canonical({}, created_at=berlin)),  # noqa: E501
        (c("extra_columns.parquet", None, 3, rows=3, description="unknown columns ignored"), _canonical({}).append_column("model", pa.array(["x"] * 3))),  # noqa: E501
        (c("turns_unsorted.parquet", None, 2, rows=4, description="rows out of turn order"), _turns(unsorted_turns)),
        # --- turn-per-row layout: bad conversation 'bad-t' after good conversation 'good-t' (rows 0-1) ---
        (c("turn_gap.parquet", "turn_gap", 1, "bad-t", "turn_index", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (2, "assistant", "yo")))),  # noqa: E501
        (c("turn_gap_starts_at_1.parquet", "turn_gap", 1, "bad-t", "turn_index", 2, 4), _turns(_good_turns() + _bad_turns((1, "user", "hi"), (2, "assistant", "yo")))),  # noqa: E501
        (c("turn_index_null.parquet", "turn_gap", 1, "bad-t", "turn_index", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (None, "assistant", "yo")))),  # noqa: E501
        (c("turn_index_duplicate.parquet", "duplicate_turn_index", 1, "bad-t", "turn_index", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (0, "assistant", "yo")))),  # noqa: E501
        (c("turn_tenant_mismatch.parquet", "tenant_mismatch", 1, "bad-t", "tenant_id", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (1, "assistant", "yo", "medcare")))),  # noqa: E501
        (c("turn_tenant_null.parquet", "missing_tenant_id", 1, "bad-t", "tenant_id", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (1, "assistant", "yo", None)))),  # noqa: E501
        (c("turn_created_null.parquet", "invalid_created_at", 1, "bad-t", "created_at", 2, 4), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (1, "assistant", "yo", "globex", None)))),  # noqa: E501
        (c("turn_id_null.parquet", "missing_conversation_id", 1, None, "conversation_id", 2, 3), _turns([*_good_turns(), (None, "globex", _T0, 0, "user", "hi")])),  # noqa: E501
        (c("turn_role_upper.parquet", "unknown_role", 1, "bad-t", "role", 2, 4, repair="role_case"), _turns(_good_turns() + _bad_turns((0, "USER", "hi"), (1, "assistant", "yo")))),  # noqa: E501
        (c("turn_no_user.parquet", "no_user_turn", 1, "bad-t", "messages", 2, 3, tolerant_reads=True), _turns(_good_turns() + _bad_turns((0, "assistant", "yo")))),  # noqa: E501
        (c("turn_content_whitespace.parquet", "empty_content", 1, "bad-t", "content", 2, 4, repair="empty_message_dropped"), _turns(_good_turns() + _bad_turns((0, "user", "hi"), (1, "assistant", "   ")))),  # noqa: E501
        (c("turn_content_nul.parquet", "invalid_text", 1, "bad-t", "content", 2, 3, tolerant_error_kind="empty_content", tolerant_field="messages"), _turns(_good_turns() + _bad_turns((0, "user", "\x00")))),  # noqa: E501
        (c("turn_no_turn_index_column.parquet", "missing_column", 0, None, "turn_index", None, 2), _turns(_good_turns()).drop_columns(["turn_index"])),  # noqa: E501
        (c("turn_index_string.parquet", "wrong_column_type", 0, None, "turn_index", None, 2), _turns(_good_turns(), turn_index=pa.array(["0", "1"]))),  # noqa: E501
    ]
    # fmt: on


def malformed_cases() -> list[MalformedCase]:
    """The manifest alone, without writing anything (e.g. to parametrise tests)."""
    return [case for case, _ in _cases()]


def write_malformed_corpus(out_dir: str | Path) -> list[MalformedCase]:
    """Write every case into `out_dir` (created if needed) and return the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for case, content in _cases():
        path = out / case.file_name
        if isinstance(content, pa.Table):
            pq.write_table(content, path)
        else:
            content(path)
        manifest.append(case)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to write the corpus into")
    for case in write_malformed_corpus(parser.parse_args().out_dir):
        print(f"{case.file_name}: {case.error_kind or 'valid'}")


if __name__ == "__main__":
    main()
