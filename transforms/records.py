"""Value types that flow through the pipeline: conversations, moderation units, dead letters.

Every type is a frozen dataclass so Beam can pickle it and nothing downstream mutates what it was given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Literal

Role = Literal["system", "user", "assistant"]
UnitLevel = Literal["prompt", "response"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
DEAD_LETTER = "dead_letter"
"""The output tag of every step's dead letters."""


@dataclasses.dataclass(frozen=True)
class Message:
    """One turn of a conversation: `system`, `user`, `assistant`, or a context line (`tool`, `tool_call`,
    `other`; see `transforms.io.normalise`). `source_index` is the index of the message it was read from (None:
    its position in the conversation)."""

    role: str
    content: str
    source_index: int | None = None


@dataclasses.dataclass(frozen=True)
class Conversation:
    """A validated conversation read from the logs, with where it came from."""

    conversation_id: str
    tenant_id: str
    created_at: dt.datetime  # timezone-aware, UTC
    messages: tuple[Message, ...]
    source_file: str
    source_row: int  # first row of this conversation in its source file
    source_rows: int = 1  # input rows it accounts for: 1 (canonical layout) or one per turn (turn-per-row)
    input_repairs: tuple[str, ...] = ()  # what normalisation repaired (`transforms.io.normalise`)

    @property
    def date(self) -> str:
        """The UTC calendar date of `created_at`, as YYYY-MM-DD (the output partition)."""
        return self.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d")


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """An input row, file or unit that could not be turned into a verdict, and why.

    `error_kind` is a short stable code (see README, "What happens to bad input"); `message` is for people.
    """

    stage: str  # read | validate | policy | render | inference | parse | write
    error_kind: str
    message: str
    source_file: str = ""
    conversation_id: str | None = None
    tenant_id: str | None = None
    row: int | None = None
    rows: int = 1  # how many input rows this record accounts for (a whole unreadable file counts all it had)
    unit: str | None = None
    turn_index: int | None = None
    scope: str = ""  # what else the outcome depended on: the policy version, or the unit's resume key

    @property
    def key(self) -> str:
        """Stable identity across runs (where, which step, which kind, under which policy/model), not the
        message: a rerun that meets the same bad input again recognises the record it already published."""
        parts = (self.stage, self.error_kind, self.source_file, self.row, self.conversation_id, self.tenant_id)
        parts += (self.unit, self.turn_index, self.scope)
        return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]

    def to_row(self) -> dict:
        """The record as a flat dict for the errors Parquet files."""
        return {**dataclasses.asdict(self), "dead_letter_key": self.key}

    @classmethod
    def for_conversation(
        cls, conversation: Conversation, stage: str, error_kind: str, message: str, scope: str = ""
    ) -> DeadLetter:
        """A dead letter for a whole conversation: its file, first row, id, tenant and every row it came from."""
        return cls(
            stage=stage,
            error_kind=error_kind,
            message=message,
            source_file=conversation.source_file,
            conversation_id=conversation.conversation_id,
            tenant_id=conversation.tenant_id,
            row=conversation.source_row,
            rows=conversation.source_rows,
            scope=scope,
        )


@dataclasses.dataclass(frozen=True)
class ModerationUnit:
    """One thing to judge: a user turn (`prompt` level) or an assistant reply (`response` level), rendered.

    `prompt` is the RSafe user message (before the model's chat template); `resume_key` identifies the
    verdict across runs (conversation, unit, turn, policy version, model, template version); `content_key`
    identifies identical work (same rendered prompt, policy version, model, template) for de-duplication.
    """

    conversation_id: str
    tenant_id: str
    date: str
    unit: str  # prompt | response
    turn_index: int  # index of the judged message in the conversation
    policy_id: str
    policy_version: str
    template_version: str
    prompt: str
    truncated_input: bool  # the judged turn itself was shortened to fit the budget
    context_turns_dropped: int
    source_file: str
    source_rows: int  # input rows of the conversation (for the accounting)
    on_parse_error: str = "flag"  # flag | unsafe | safe: what parse_error means for this tenant
    on_truncated: str = "flag"
    reasoning_budget: int | None = None  # per-policy override of the phase-1 token budget
    cascade_band: tuple[float, float] | None = None  # per-policy override of the cascade band
    allowed_codes: tuple[str, ...] = ()  # the policy's category codes (for parsing listed categories)
    content_key: str = ""
    resume_key: str = ""
    input_repairs: tuple[str, ...] = ()  # the conversation's normalisation repairs (listed on the verdict row)
