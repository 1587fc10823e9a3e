"""Tolerant message normalisation: the messages as read → what the guard sees, and every repair it took.

Pure functions. The rules (`REPAIR_KINDS` names each repair):
- roles are matched case-insensitively, spaces stripped, with the usual aliases (`human` → user, `gpt`/`bot`/
  `model`/`ai` → assistant, `developer` → system); `tool`/`function`/`ipython` messages are kept as context
  (`tool` role, rendered `Tool: …`), any other or null role too (`other` role, rendered `Other: …`);
- a message's tool calls (`tool_calls`, or a legacy `function_call`; in practice an assistant's) become
  `tool_call` context messages (`Tool call: name(arguments)`), one per call, after its text if it has any;
- `content` may be a string, a list of parts (`{type, text}` as in the OpenAI chat format) or a JSON string of
  that list: text parts are joined by newlines, other parts become a placeholder line (`[image]`);
- invalid UTF-8 is replaced (U+FFFD), NUL and other control characters (but tab and newline) are removed;
- null messages and messages empty or whitespace-only after all that (and without a tool call) are dropped.

A repair is listed once per kind and detail, with the turns (indexes of the messages as read) it applied to,
e.g. `role_alias: 'human' → user (turns 0, 2)`; `repair_kind` gives back its kind.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from transforms.records import Message

ROLE_ALIASES: dict[str, str] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}
"""Role as written (stripped, lower-cased) → the role it is judged as."""

REPAIR_KINDS: dict[str, str] = {
    "role_case": "a known role spelt with other case or surrounding spaces (`User` → user)",
    "role_alias": "a role alias mapped (`human` → user, `gpt`/`bot`/`model`/`ai` → assistant, `developer` → system)",
    "tool_as_context": "a `tool`/`function`/`ipython` message kept as context (a `Tool:` line, not a turn)",
    "tool_call_as_context": "an assistant message's tool call kept as context (a `Tool call:` line)",
    "unknown_role_as_context": "a message with an unknown or null role kept as context (an `Other:` line)",
    "null_message_dropped": "a message that is null as a whole was dropped",
    "empty_message_dropped": "a message with null, empty or whitespace-only content (and no tool call) was dropped",
    "control_characters_removed": "NUL or other control characters (but tab and newline) were removed",
    "invalid_utf8_replaced": "bytes that are not valid UTF-8 (incl. encoded lone surrogates) were replaced by U+FFFD",
    "content_json_parts": "a content string holding a JSON list of content parts was read as those parts",
    "non_text_part_placeholder": "a non-text content part (image, audio, file) became a placeholder line",
}
"""Every repair kind, with what it means (listed on the verdict row in `input_repairs`)."""

CONTEXT_ROLES: tuple[str, ...] = ("tool", "tool_call", "other")
"""Roles the guard sees as context lines, never as the judged turn."""

# C0 controls but tab/newline/carriage return, DEL and the C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TEXT_FIELD = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}  # type → field
_PLAIN_ROLES = frozenset({"user", "assistant", "system"})
_PLACEHOLDERS = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "input_audio": "audio",
    "audio_url": "audio",
    "audio": "audio",
    "file": "file",
    "input_file": "file",
}


class RawMessage(NamedTuple):
    """One message as read, before normalisation (bytes where the file had text, so decoding is ours)."""

    role: bytes | str | None
    content: object  # bytes | str | list of parts | None
    tool_calls: object = None  # list of {function: {name, arguments}} or {name, arguments}, or a JSON string
    name: bytes | str | None = None  # a tool message's function name, if the log has one
    is_null: bool = False  # the whole message is null


@dataclasses.dataclass(frozen=True)
class Normalised:
    """The messages the guard sees (each with the index it was read at) and the repairs made."""

    messages: tuple[Message, ...]
    repairs: tuple[str, ...]


def repair_kind(entry: str) -> str:
    """The kind of an `input_repairs` entry (`role_alias: 'human' → user (turn 0)` → `role_alias`)."""
    return entry.split(":", 1)[0]


def decode_lenient(value: bytes | str | None) -> tuple[str | None, bool]:
    """(text, whether invalid UTF-8 was replaced)."""
    if value is None or isinstance(value, str):
        return value, False
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return value.decode("utf-8", errors="replace"), True


def clean_text(text: str) -> tuple[str, bool]:
    """(text without NUL and other control characters, whether any were removed)."""
    cleaned = _CONTROL.sub("", text)
    return cleaned, cleaned != text


def canonical_role(role: str | None) -> tuple[str, str | None]:
    """(role judged as, repair kind or None) for a role as written."""
    if role is None:
        return "other", "unknown_role_as_context"
    folded = role.strip().lower()
    canonical = ROLE_ALIASES.get(folded)
    if canonical is None:
        return "other", "unknown_role_as_context"
    if canonical == "tool":
        return "tool", "tool_as_context"
    if role == canonical:
        return canonical, None
    return canonical, "role_case" if folded == canonical else "role_alias"


def _json_parts(text: str) -> list | None:
    """The parts of a content string that is a JSON list of content parts of known types, else None (then the
    string is judged as written: an unknown part type must not hide text behind a placeholder)."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        parts = json.loads(stripped)
    except ValueError:
        return None
    known = set(_TEXT_FIELD) | set(_PLACEHOLDERS)
    ok = isinstance(parts, list) and parts and all(isinstance(p, dict) and p.get("type") in known for p in parts)
    return parts if ok else None


def _part_text(part: object, add: Callable[[str, str], None]) -> str | None:
    """The text of one content part (a placeholder for a non-text part); repairs go to `add(kind, detail)`."""
    if part is None:
        return None
    if not isinstance(part, dict):
        return _decoded(part, add) if isinstance(part, bytes | str) else str(part)
    kind = _decoded(part.get("type"), add)
    field = _TEXT_FIELD.get(kind or "", "text")
    text = _decoded(part.get(field), add)
    if kind in _TEXT_FIELD or (kind is None and text is not None):
        return text
    name = _PLACEHOLDERS.get(kind or "", kind or "part")
    add("non_text_part_placeholder", f"[{name}]")
    return f"[{name}]\n{text}" if text and text.strip() else f"[{name}]"  # text on a non-text part is kept


def _decoded(value: object, add: Callable[[str, str], None]) -> str | None:
    text, replaced = decode_lenient(value) if isinstance(value, bytes | str) or value is None else (str(value), False)
    if replaced:
        add("invalid_utf8_replaced", "")
    return text


def content_text(content: object) -> tuple[str | None, list[tuple[str, str]]]:
    """(the text of a content value, [(repair kind, detail)]): a string, bytes, a list of parts or JSON parts."""
    repairs: list[tuple[str, str]] = []

    def add(kind: str, detail: str) -> None:
        if (kind, detail) not in repairs:
            repairs.append((kind, detail))

    if isinstance(content, bytes):
        content = _decoded(content, add)
    if isinstance(content, str):
        parts = _json_parts(content)
        if parts is None:
            return content, repairs
        add("content_json_parts", "")
        content = parts
    if content is None:
        return None, repairs
    if not isinstance(content, list | tuple):
        return str(content), repairs
    texts = [text for text in (_part_text(part, add) for part in content) if text is not None]
    return "\n".join(texts), repairs


def _as_list(tool_calls: object) -> list:
    if isinstance(tool_calls, bytes | str):
        text = decode_lenient(tool_calls)[0] or ""
        try:
            tool_calls = json.loads(text) if text.strip() else None
        except ValueError:
            return [text]
    if tool_calls is None:
        return []
    return list(tool_calls) if isinstance(tool_calls, list | tuple) else [tool_calls]


def tool_call_lines(tool_calls: object) -> list[str]:
    """One `name(arguments)` text per call (OpenAI `tool_calls` items, legacy `function_call`, or JSON of them)."""
    lines = []
    for call in _as_list(tool_calls):
        if not isinstance(call, dict):
            lines.append(str(call))
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else call
        name = decode_lenient(function.get("name"))[0] or "unnamed"
        arguments = function.get("arguments")
        if isinstance(arguments, bytes):
            arguments = decode_lenient(arguments)[0]
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        lines.append(f"{name}({arguments or ''})")
    return lines


class _Repairs:
    """Repairs collected in order: (kind, detail) → the turns they applied to."""

    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], list[int]] = {}

    def add(self, kind: str, index: int, detail: str = "") -> None:
        turns = self.turns.setdefault((kind, detail), [])
        if index not in turns:
            turns.append(index)

    def entries(self) -> tuple[str, ...]:
        out = []
        for (kind, detail), turns in self.turns.items():
            where = f"turn{'s' if len(turns) > 1 else ''} {', '.join(map(str, turns))}"
            out.append(f"{kind}: {detail} ({where})" if detail else f"{kind}: {where}")
        return tuple(out)


def _clean(text: str | None, index: int, repairs: _Repairs) -> str:
    cleaned, changed = clean_text(text or "")
    if changed:
        repairs.add("control_characters_removed", index)
    return cleaned


def _plain(index: int, raw: RawMessage) -> Message | None:
    """The message when nothing needs repairing (the common case, checked cheaply), else None."""
    role, content = raw.role, raw.content
    if type(role) is not bytes or type(content) is not bytes or raw.tool_calls or raw.is_null:
        return None
    try:
        role_text, text = role.decode("utf-8"), content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if role_text not in _PLAIN_ROLES or _CONTROL.search(text) or not text.strip() or text.lstrip()[:1] == "[":
        return None
    return Message(role_text, text, index)


def _normalise_one(index: int, raw: RawMessage, repairs: _Repairs) -> list[Message]:
    plain = _plain(index, raw)
    if plain is not None:
        return [plain]
    if raw.is_null:
        repairs.add("null_message_dropped", index)
        return []
    written, replaced = decode_lenient(raw.role)
    role, role_repair = canonical_role(written)
    if replaced:
        repairs.add("invalid_utf8_replaced", index)
    if role_repair:
        shown = "null" if written is None else repr(written)
        repairs.add(role_repair, index, "" if role_repair == "tool_as_context" else f"{shown} → {role}")
    text, content_repairs = content_text(raw.content)
    for kind, detail in content_repairs:
        repairs.add(kind, index, detail)
    text = _clean(text, index, repairs)
    calls = [_clean(line, index, repairs) for line in tool_call_lines(raw.tool_calls)]
    if role == "tool" and text.strip() and raw.name:
        text = f"[{_clean(decode_lenient(raw.name)[0], index, repairs)}] {text}"
    if role == "other" and text.strip():
        text = f"[role {'null' if written is None else repr(written.strip())}] {text}"
    messages = [Message(role, text, index)] if text.strip() else []
    if calls:
        repairs.add("tool_call_as_context", index)
        messages += [Message("tool_call", line, index) for line in calls]
    if not messages:
        repairs.add("empty_message_dropped", index)
    return messages


def normalise_messages(raw_messages: Sequence[RawMessage]) -> Normalised:
    """The messages the guard sees, in order, and the repairs taken (see the module docstring)."""
    repairs = _Repairs()
    messages = [m for index, raw in enumerate(raw_messages) for m in _normalise_one(index, raw, repairs)]
    return Normalised(tuple(messages), repairs.entries())


def repair_kinds(entries: Iterable[str]) -> set[str]:
    """The distinct kinds among `input_repairs` entries."""
    return {repair_kind(entry) for entry in entries}
