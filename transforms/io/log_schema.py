"""Layouts of the conversation logs, their schema checks, value decoding and per-conversation validation.

Two layouts are accepted (extra columns are ignored in both):

* canonical, one row per conversation:
  `conversation_id: string, tenant_id: string, created_at: timestamp, messages: list<struct<role, content>>`
* turn-per-row, one row per message:
  `conversation_id, tenant_id, created_at, turn_index: int, role: string, content: string`

A file with a `messages` column is canonical; otherwise one with any of `turn_index`, `role`, `content` is
turn-per-row; otherwise it is treated as canonical (and so reported as `missing_column`). Text columns may be
string, large_string, string_view or binary; `created_at` may be a timestamp (tz-naive values are taken as
UTC, tz-aware ones are converted to UTC) or an ISO 8601 string. A column whose values are all null (Arrow
type `null`) passes the schema check and is then reported row by row.

Message fields (canonical `messages` structs): `role` and `content`, or ShareGPT's `from` and `value`; optional
`tool_calls`, `function_call` and `name`. Unless input is strict (`--strict-input`), `content` (and the
turn-per-row `content` column) may also be a list of content parts, and the turn-per-row layout may have
`tool_calls` and `name` columns; what the values become is `transforms.io.normalise`'s business.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pyarrow as pa

from transforms.io.normalise import RawMessage

CANONICAL = "canonical"
TURN_PER_ROW = "turn_per_row"
CANONICAL_COLUMNS: tuple[str, ...] = ("conversation_id", "tenant_id", "created_at", "messages")
TURN_COLUMNS: tuple[str, ...] = (
    "conversation_id",
    "tenant_id",
    "created_at",
    "turn_index",
    "role",
    "content",
)

# The stable dead-letter codes of the read stage (stage "read" for unreadable_file, "validate" otherwise).
ERROR_KINDS: dict[str, str] = {
    "unreadable_file": "not Parquet, truncated or corrupt; one dead letter for the whole file, rows = the "
    "footer's row count (minus rows already read) if the footer was readable, else 0",
    "missing_column": "a column the layout needs is absent; one dead letter for the whole file",
    "wrong_column_type": "a needed column has an unusable type; one dead letter for the whole file",
    "missing_conversation_id": "conversation_id is null, empty or whitespace-only",
    "missing_tenant_id": "tenant_id is null, empty or whitespace-only",
    "invalid_created_at": "created_at is null, an unparseable string or out of range",
    "empty_messages": "messages is null or an empty list",
    "unknown_role": "--strict-input: a role that is not exactly system, user or assistant (case and spaces "
    "count), or null",
    "no_user_turn": "--strict-input: no message has role user; otherwise: no user or assistant message is "
    "left after normalisation (only system messages and context lines)",
    "empty_content": "--strict-input: a message's content is null, empty or whitespace-only; otherwise: every "
    "message was dropped as null or empty, so nothing is left to judge",
    "invalid_text": "an id or tenant (with --strict-input: any text value) is not valid UTF-8 (this includes "
    "UTF-8-encoded lone surrogates) or contains a NUL character",
    "turn_gap": "turn-per-row: a turn_index is null, or a conversation's indexes are not 0..n-1",
    "duplicate_turn_index": "turn-per-row: two rows of one conversation have the same turn_index",
    "tenant_mismatch": "turn-per-row: the rows of one conversation disagree on tenant_id",
    "duplicate_conversation_id": "the conversation_id was already read in this run; the first by "
    "(source_file, source_row) is kept, the others are dead-lettered",
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
ROLE_FIELDS: tuple[str, ...] = ("role", "from")  # in a message struct, first found wins (`from`: ShareGPT)
CONTENT_FIELDS: tuple[str, ...] = ("content", "value")
OPTIONAL_TURN_COLUMNS: tuple[str, ...] = ("tool_calls", "name")  # turn-per-row, read when present


class Invalid(NamedTuple):
    """A value that could not be decoded, and why (used in place of the value)."""

    reason: str


def detect_layout(schema: pa.Schema) -> str:
    """`CANONICAL` or `TURN_PER_ROW`, from the column names (see the module docstring)."""
    names = set(schema.names)
    if "messages" not in names and names & {"turn_index", "role", "content"}:
        return TURN_PER_ROW
    return CANONICAL


def _is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_null(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def _is_parts(t: pa.DataType) -> bool:
    """A list of content parts (structs or strings)."""
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        pa.types.is_struct(t.value_type) or _is_text(t.value_type)
    )


def _messages_problem(t: pa.DataType, strict: bool) -> str | None:
    expected = "expected list<struct<role: string, content: string>>"
    if pa.types.is_null(t):
        return None
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return f"has type {t}, {expected}"
    fields = {f.name: f.type for f in t.value_type}
    for names in (ROLE_FIELDS, CONTENT_FIELDS):
        found = next((n for n in (names[:1] if strict else names) if n in fields), None)
        usable = found is not None and (_is_text(fields[found]) or (not strict and _is_parts(fields[found])))
        if not usable:
            return f"has type {t}, {expected} (bad '{names[0]}')"
    return None


def _type_problem(column: str, t: pa.DataType, strict: bool = False) -> str | None:
    """Why `t` is unusable for `column`, or None when it is fine."""
    if column == "created_at":
        ok = pa.types.is_timestamp(t) or _is_text(t)
        return None if ok else f"has type {t}, expected timestamp or ISO 8601 string"
    if column == "turn_index":
        return None if pa.types.is_integer(t) or pa.types.is_null(t) else f"has type {t}, expected integer"
    if column == "messages":
        return _messages_problem(t, strict)
    if column == "content" and not strict and _is_parts(t):
        return None
    return None if _is_text(t) else f"has type {t}, expected string"


def schema_problem(schema: pa.Schema, layout: str, strict: bool = False) -> tuple[str, str, str] | None:
    """The first schema problem for `layout` as (error_kind, column, detail), or None (`strict`: only string
    content and `role`/`content` message fields, as `--strict-input` wants)."""
    columns = CANONICAL_COLUMNS if layout == CANONICAL else TURN_COLUMNS
    for column in columns:
        if column not in schema.names:
            return "missing_column", column, f"is missing ({layout} layout needs {', '.join(columns)})"
    for column in columns:
        detail = _type_problem(column, schema.field(column).type, strict)
        if detail:
            return "wrong_column_type", column, detail
    return None


def decode_text(value: bytes | None) -> str | Invalid | None:
    """Strict UTF-8 decoding; invalid bytes (lone surrogates included) and NUL characters give `Invalid`."""
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(f"is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    if "\x00" in text:
        return Invalid(f"contains a NUL character at position {text.index(chr(0))}")
    return text


def text_values(array: pa.Array | pa.ChunkedArray) -> list[str | Invalid | None]:
    """The values of a text column, decoded without trusting Arrow's UTF-8."""
    return [decode_text(v) for v in array.cast(pa.large_binary()).to_pylist()]


def parse_timestamp_text(text: str | Invalid | None) -> dt.datetime | Invalid:
    """An ISO 8601 string as a UTC datetime (no offset means UTC)."""
    if text is None:
        return Invalid("is null")
    if isinstance(text, Invalid):
        return text
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return Invalid(f"is not an ISO 8601 timestamp: {text[:40]!r}")
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def timestamp_values(array: pa.Array | pa.ChunkedArray) -> list[dt.datetime | Invalid]:
    """The values of `created_at` as UTC datetimes (tz-naive timestamps are taken as UTC)."""
    t = array.type
    if not pa.types.is_timestamp(t):
        return [parse_timestamp_text(v) for v in text_values(array)]
    values: list[dt.datetime | Invalid] = []
    for raw in array.cast(pa.int64()).to_pylist():  # instants since the epoch (wall clock when tz-naive)
        if raw is None:
            values.append(Invalid("is null"))
            continue
        micros = raw // 1_000 if t.unit == "ns" else raw * _MICROS_PER_UNIT[t.unit]
        try:
            values.append(_EPOCH + dt.timedelta(microseconds=micros))
        except OverflowError:
            values.append(Invalid(f"is out of range ({raw} {t.unit} since the epoch)"))
    return values


def _as_binary(t: pa.DataType) -> pa.DataType:
    """`t` with every text type in it (nested in lists and structs too) made large_binary."""
    if _is_text(t) and not pa.types.is_null(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_as_binary(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_as_binary(f.type)) for f in t])
    return t


def raw_values(array: pa.Array | pa.ChunkedArray) -> list:
    """A column's values as read, text as bytes at any depth (decoded later, strictly or not: Arrow's own
    decoding would raise on invalid UTF-8)."""
    return array.cast(_as_binary(array.type)).to_pylist()


def message_values(array: pa.Array | pa.ChunkedArray) -> list[list[RawMessage] | None]:
    """The `messages` column as lists of `RawMessage` (None where the list is null)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    if pa.types.is_null(array.type):
        return [None] * len(array)
    structs = array.values
    children = dict(zip((f.name for f in structs.type), structs.flatten(), strict=True))

    def field(names: tuple[str, ...]) -> list:
        name = next((n for n in names if n in children), None)
        return raw_values(children[name]) if name else [None] * len(structs)

    roles, contents = field(ROLE_FIELDS), field(CONTENT_FIELDS)
    calls, legacy, names = field(("tool_calls",)), field(("function_call",)), field(("name",))
    nulls = structs.is_null().to_pylist()
    offsets = array.offsets.to_pylist()
    valid = array.is_valid().to_pylist()
    return [
        [
            RawMessage(roles[j], contents[j], calls[j] or legacy[j], names[j], nulls[j])
            for j in range(offsets[i], offsets[i + 1])
        ]
        if valid[i]
        else None
        for i in range(len(array))
    ]
