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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import NamedTuple

import pyarrow as pa

from transforms.records import ROLES, Conversation, DeadLetter, Message

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
    "unknown_role": "a role that is not exactly system, user or assistant (case and spaces count), or null",
    "no_user_turn": "no message has role user",
    "empty_content": "a message's content is null, empty or whitespace-only",
    "invalid_text": "a text value is not valid UTF-8 (this includes UTF-8-encoded lone surrogates) or "
    "contains a NUL character",
    "turn_gap": "turn-per-row: a turn_index is null, or a conversation's indexes are not 0..n-1",
    "duplicate_turn_index": "turn-per-row: two rows of one conversation have the same turn_index",
    "tenant_mismatch": "turn-per-row: the rows of one conversation disagree on tenant_id",
    "duplicate_conversation_id": "the conversation_id was already read in this run; the first by "
    "(source_file, source_row) is kept, the others are dead-lettered",
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.large_binary()), ("content", pa.large_binary())]))


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


def _type_problem(column: str, t: pa.DataType) -> str | None:
    """Why `t` is unusable for `column`, or None when it is fine."""
    if column == "created_at":
        ok = pa.types.is_timestamp(t) or _is_text(t)
        return None if ok else f"has type {t}, expected timestamp or ISO 8601 string"
    if column == "turn_index":
        return None if pa.types.is_integer(t) or pa.types.is_null(t) else f"has type {t}, expected integer"
    if column == "messages":
        if pa.types.is_null(t):
            return None
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
            return f"has type {t}, expected list<struct<role: string, content: string>>"
        fields = {f.name: f.type for f in t.value_type}
        for name in ("role", "content"):
            if name not in fields or not _is_text(fields[name]):
                return f"has type {t}, expected list<struct<role: string, content: string>> (bad '{name}')"
        return None
    return None if _is_text(t) else f"has type {t}, expected string"


def schema_problem(schema: pa.Schema, layout: str) -> tuple[str, str, str] | None:
    """The first schema problem for `layout` as (error_kind, column, detail), or None."""
    columns = CANONICAL_COLUMNS if layout == CANONICAL else TURN_COLUMNS
    for column in columns:
        if column not in schema.names:
            return "missing_column", column, f"is missing ({layout} layout needs {', '.join(columns)})"
    for column in columns:
        detail = _type_problem(column, schema.field(column).type)
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


def message_values(array: pa.Array | pa.ChunkedArray) -> list[list[dict | None] | None]:
    """The `messages` column as lists of {'role': bytes, 'content': bytes} (or None for a null message)."""
    return array.cast(_MESSAGE_TYPE).to_pylist()


@dataclasses.dataclass
class Turn:
    """One message as read, before validation."""

    row: int
    turn_index: int | None
    role: str | Invalid | None
    content: str | Invalid | None


@dataclasses.dataclass
class RawConversation:
    """One conversation's values as read from one canonical row or from its turn rows, before validation."""

    source_file: str
    layout: str
    rows: list[int]  # file rows it came from, ascending
    conversation_id: str | Invalid | None
    tenant_ids: list[tuple[int, str | Invalid | None]]  # (row, value), one per row
    created_ats: list[tuple[int, dt.datetime | Invalid]]
    turns: list[Turn] | None  # None: messages is null


class _Reject(Exception):
    def __init__(self, kind: str, row: int, field: str, detail: str, turn_index: int | None = None):
        super().__init__(detail)
        self.kind, self.row, self.field, self.detail, self.turn_index = kind, row, field, detail, turn_index


def _check_text(value: str | Invalid | None, row: int, field: str, missing_kind: str) -> str:
    if isinstance(value, Invalid):
        raise _Reject("invalid_text", row, field, value.reason)
    if value is None or not value.strip():
        raise _Reject(missing_kind, row, field, "is null" if value is None else f"is blank ({value!r})")
    return value


def _ordered_turns(raw: RawConversation) -> list[Turn]:
    """The turns in conversation order, after the turn-per-row index checks."""
    turns = raw.turns or []
    if raw.layout == CANONICAL:
        return turns
    seen: dict[int, int] = {}
    for turn in turns:
        if turn.turn_index is None:
            raise _Reject("turn_gap", turn.row, "turn_index", "is null")
        if turn.turn_index in seen:
            detail = f"{turn.turn_index} is also used by row {seen[turn.turn_index]}"
            raise _Reject("duplicate_turn_index", turn.row, "turn_index", detail, turn.turn_index)
        seen[turn.turn_index] = turn.row
    ordered = sorted(turns, key=lambda t: t.turn_index)
    for expected, turn in enumerate(ordered):
        if turn.turn_index != expected:
            detail = f"is {turn.turn_index} but turn {expected} is missing (indexes must be 0..{len(turns) - 1})"
            raise _Reject("turn_gap", turn.row, "turn_index", detail, turn.turn_index)
    return ordered


def _checked(raw: RawConversation) -> Conversation:
    first_row = raw.rows[0]
    conversation_id = _check_text(raw.conversation_id, first_row, "conversation_id", "missing_conversation_id")
    tenants = [(row, _check_text(v, row, "tenant_id", "missing_tenant_id")) for row, v in raw.tenant_ids]
    tenant_id = tenants[0][1]
    for row, other in tenants[1:]:
        if other != tenant_id:
            detail = f"is {other!r} but row {tenants[0][0]} has {tenant_id!r}"
            raise _Reject("tenant_mismatch", row, "tenant_id", detail)
    for row, value in raw.created_ats:
        if isinstance(value, Invalid):
            raise _Reject("invalid_created_at", row, "created_at", value.reason)
    if not raw.turns:
        raise _Reject("empty_messages", first_row, "messages", "is null" if raw.turns is None else "is empty")
    messages: list[Message] = []
    for index, turn in enumerate(_ordered_turns(raw)):
        prefix = f"messages[{index}]." if raw.layout == CANONICAL else ""
        if isinstance(turn.role, Invalid) or turn.role not in ROLES:
            shown = turn.role.reason if isinstance(turn.role, Invalid) else repr(turn.role)
            shown = "null" if turn.role is None else shown
            detail = f"is {shown}, expected one of {', '.join(ROLES)}"
            raise _Reject("unknown_role", turn.row, prefix + "role", detail, index)
        try:
            content = _check_text(turn.content, turn.row, prefix + "content", "empty_content")
        except _Reject as reject:
            reject.turn_index = index
            raise
        messages.append(Message(role=turn.role, content=content))
    if not any(m.role == "user" for m in messages):
        roles = ", ".join(m.role for m in messages)
        raise _Reject("no_user_turn", first_row, "messages", f"has no user message (roles: {roles})")
    return Conversation(
        conversation_id=conversation_id,
        tenant_id=tenant_id,
        created_at=min(value for _, value in raw.created_ats),
        messages=tuple(messages),
        source_file=raw.source_file,
        source_row=first_row,
        source_rows=len(raw.rows),
    )


def validate_conversation(raw: RawConversation) -> Conversation | DeadLetter:
    """A `Conversation`, or a `DeadLetter` (stage "validate") for the first problem found.

    Checks run in this order: conversation_id, tenant_id (then tenant_mismatch), created_at, messages
    (empty), turn indexes (turn-per-row), each message's role then content, and finally no_user_turn.
    """
    try:
        return _checked(raw)
    except _Reject as reject:
        cid = raw.conversation_id if isinstance(raw.conversation_id, str) and raw.conversation_id.strip() else None
        tenant = next((v for _, v in raw.tenant_ids if isinstance(v, str) and v.strip()), None)
        about = f" (conversation {cid!r})" if cid else ""
        return DeadLetter(
            stage="validate",
            error_kind=reject.kind,
            message=f"{raw.source_file}: row {reject.row}{about}: field '{reject.field}' {reject.detail}",
            source_file=raw.source_file,
            conversation_id=cid,
            tenant_id=tenant,
            row=raw.rows[0],
            rows=len(raw.rows),
            turn_index=reject.turn_index,
        )
