"""One conversation's values as read → a validated `Conversation`, or a `DeadLetter` naming the rule that applied.

Ids, tenants, timestamps and turn indexes are always checked strictly. Messages are normalised tolerantly
(`transforms.io.normalise`: role aliases, tool messages as context, empty messages dropped, text repaired, every
repair recorded on the conversation) unless `strict` (`--strict-input`), which rejects a conversation at its
first message that is not exactly a `system`/`user`/`assistant` role with non-empty, valid string content.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from transforms.io.log_schema import CANONICAL, Invalid, decode_text
from transforms.io.normalise import RawMessage, normalise_messages
from transforms.records import ROLES, Conversation, DeadLetter, Message


@dataclasses.dataclass
class Turn:
    """One message as read, before validation."""

    row: int
    turn_index: int | None
    message: RawMessage


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


def _strict_text(value: object) -> str | Invalid | None:
    if value is None or isinstance(value, bytes):
        return decode_text(value)
    if isinstance(value, str):
        return decode_text(value.encode("utf-8", errors="surrogatepass"))
    return Invalid("is a list of content parts (not accepted with --strict-input)")


def _strict_messages(turns: list[Turn], layout: str) -> tuple[Message, ...]:
    """Today's strict rules: every message exactly system/user/assistant with non-empty, valid string content."""
    messages: list[Message] = []
    for index, turn in enumerate(turns):
        prefix = f"messages[{index}]." if layout == CANONICAL else ""
        role = Invalid("null (the whole message is null)") if turn.message.is_null else _strict_text(turn.message.role)
        if isinstance(role, Invalid) or role not in ROLES:
            shown = "null" if role is None else role.reason if isinstance(role, Invalid) else repr(role)
            detail = f"is {shown}, expected one of {', '.join(ROLES)}"
            raise _Reject("unknown_role", turn.row, prefix + "role", detail, index)
        try:
            content = _check_text(_strict_text(turn.message.content), turn.row, prefix + "content", "empty_content")
        except _Reject as reject:
            reject.turn_index = index
            raise
        messages.append(Message(role=role, content=content))
    return tuple(messages)


def _checked(raw: RawConversation, strict: bool) -> Conversation:
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
    turns = _ordered_turns(raw)
    repairs: tuple[str, ...] = ()
    if strict:
        messages = _strict_messages(turns, raw.layout)
    else:
        normalised = normalise_messages([t.message for t in turns])
        messages, repairs = normalised.messages, normalised.repairs
        if not messages:
            detail = f"has nothing left to judge: {len(turns)} message(s), all dropped ({'; '.join(repairs)})"
            raise _Reject("empty_content", first_row, "messages", detail)
    judgeable = ("user",) if strict else ("user", "assistant")  # tolerant: an assistant reply alone is judged
    if not any(m.role in judgeable for m in messages):
        roles = ", ".join(m.role for m in messages)
        what = "user message" if strict else "user or assistant message"
        raise _Reject("no_user_turn", first_row, "messages", f"has no {what} (roles: {roles})")
    return Conversation(
        conversation_id=conversation_id,
        tenant_id=tenant_id,
        created_at=min(value for _, value in raw.created_ats),
        messages=messages,
        source_file=raw.source_file,
        source_row=first_row,
        source_rows=len(raw.rows),
        input_repairs=repairs,
    )


def validate_conversation(raw: RawConversation, strict: bool = False) -> Conversation | DeadLetter:
    """A `Conversation`, or a `DeadLetter` (stage "validate") for the first problem found.

    Checks run in this order: conversation_id, tenant_id (then tenant_mismatch), created_at, messages
    (empty), turn indexes (turn-per-row), the messages (strictly: each one's role then content; tolerantly:
    normalised, `empty_content` when none is left), and finally no_user_turn (strictly: no user message;
    tolerantly: no user or assistant message, only system and context lines).
    """
    try:
        return _checked(raw, strict)
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
