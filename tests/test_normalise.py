"""Table tests of tolerant message normalisation (`transforms.io.normalise`)."""

from __future__ import annotations

import json

import pytest

from transforms.io.normalise import (
    REPAIR_KINDS,
    RawMessage,
    canonical_role,
    clean_text,
    content_text,
    decode_lenient,
    normalise_messages,
    repair_kind,
    repair_kinds,
    tool_call_lines,
)
from transforms.records import Message


@pytest.mark.parametrize(
    ("written", "role", "repair"),
    [
        ("user", "user", None),
        ("assistant", "assistant", None),
        ("system", "system", None),
        ("User", "user", "role_case"),
        ("ASSISTANT", "assistant", "role_case"),
        (" user ", "user", "role_case"),
        ("human", "user", "role_alias"),
        ("Human", "user", "role_alias"),
        ("gpt", "assistant", "role_alias"),
        ("bot", "assistant", "role_alias"),
        ("model", "assistant", "role_alias"),
        ("AI", "assistant", "role_alias"),
        ("developer", "system", "role_alias"),
        ("tool", "tool", "tool_as_context"),
        ("function", "tool", "tool_as_context"),
        ("ipython", "tool", "tool_as_context"),
        ("narrator", "other", "unknown_role_as_context"),
        ("", "other", "unknown_role_as_context"),
        (None, "other", "unknown_role_as_context"),
    ],
)
def test_canonical_role(written: str | None, role: str, repair: str | None) -> None:
    assert canonical_role(written) == (role, repair)


@pytest.mark.parametrize(
    ("raw", "text", "replaced"),
    [
        (None, None, False),
        ("already text", "already text", False),
        ("héllo".encode(), "héllo", False),
        (b"\xff\xfe", "\ufffd\ufffd", True),
        (b"half \xed\xa0\x80 pair", "half \ufffd\ufffd\ufffd pair", True),  # an encoded lone surrogate
    ],
)
def test_decode_lenient(raw: bytes | str | None, text: str | None, replaced: bool) -> None:
    assert decode_lenient(raw) == (text, replaced)


@pytest.mark.parametrize(
    ("text", "cleaned", "changed"),
    [
        ("plain\ttext\nnext line\r\n", "plain\ttext\nnext line\r\n", False),
        ("a\x00b", "ab", True),
        ("bell\x07 esc\x1b[31m del\x7f c1\x85", "bell esc[31m del c1", True),
        ("ünïcödé ‹›", "ünïcödé ‹›", False),
    ],
)
def test_clean_text(text: str, cleaned: str, changed: bool) -> None:
    assert clean_text(text) == (cleaned, changed)


_IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}


@pytest.mark.parametrize(
    ("content", "text", "repairs"),
    [
        ("plain", "plain", []),
        (b"bytes", "bytes", []),
        (None, None, []),
        ([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}], "one\ntwo", []),
        ([{"type": "text", "text": "look:"}, _IMAGE], "look:\n[image]", [("non_text_part_placeholder", "[image]")]),
        ([{"type": "input_audio", "input_audio": {}}], "[audio]", [("non_text_part_placeholder", "[audio]")]),
        ([{"type": "file", "file": {}}], "[file]", [("non_text_part_placeholder", "[file]")]),
        (["bare", "strings"], "bare\nstrings", []),
        ([{"type": "text", "text": None, "image_url": None}], "", []),  # Arrow gives every struct field
        (json.dumps([{"type": "text", "text": "from json"}]), "from json", [("content_json_parts", "")]),
        ("[1, 2, 3]", "[1, 2, 3]", []),  # JSON, but not content parts: left as text
        ("[not json]", "[not json]", []),
        (b"\xff", "\ufffd", [("invalid_utf8_replaced", "")]),
        ([{"type": b"text", "text": b"ok \xff"}], "ok \ufffd", [("invalid_utf8_replaced", "")]),  # bytes from Arrow
        ([{"type": "refusal", "refusal": "I can't help."}], "I can't help.", []),
        (  # a part type nobody knows: its text is not hidden behind the placeholder
            [{"type": "mystery", "text": "hidden words"}],
            "[mystery]\nhidden words",
            [("non_text_part_placeholder", "[mystery]")],
        ),
        ('[{"type": "mystery", "payload": "harmful"}]', '[{"type": "mystery", "payload": "harmful"}]', []),  # as text
    ],
)
def test_content_text(content: object, text: str | None, repairs: list) -> None:
    assert content_text(content) == (text, repairs)


@pytest.mark.parametrize(
    ("tool_calls", "lines"),
    [
        (None, []),
        ([], []),
        (
            [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
            ['get_weather({"city": "Paris"})'],
        ),
        (  # parallel tool calls
            [
                {"function": {"name": "a", "arguments": "{}"}},
                {"function": {"name": "b", "arguments": '{"x": 1}'}},
            ],
            ["a({})", 'b({"x": 1})'],
        ),
        ({"name": "legacy", "arguments": '{"q": 1}'}, ['legacy({"q": 1})']),  # function_call
        ('[{"function": {"name": "j", "arguments": {"k": 2}}}]', ['j({"k": 2})']),  # JSON string, dict args
        ("not json", ["not json"]),
        ([{"function": {"name": None, "arguments": None}}], ["unnamed()"]),
    ],
)
def test_tool_call_lines(tool_calls: object, lines: list[str]) -> None:
    assert tool_call_lines(tool_calls) == lines


def _roles(messages: tuple[Message, ...]) -> list[tuple[str, str, int | None]]:
    return [(m.role, m.content, m.source_index) for m in messages]


_CALL = [{"function": {"name": "search", "arguments": '{"q": "x"}'}}]


@pytest.mark.parametrize(
    ("raw", "expected", "repairs"),
    [
        ([RawMessage("user", "hi"), RawMessage("assistant", "yo")], [("user", "hi", 0), ("assistant", "yo", 1)], ()),
        (
            [RawMessage("human", "hi"), RawMessage("gpt", "yo"), RawMessage("human", "again")],
            [("user", "hi", 0), ("assistant", "yo", 1), ("user", "again", 2)],
            ("role_alias: 'human' → user (turns 0, 2)", "role_alias: 'gpt' → assistant (turn 1)"),
        ),
        (
            [RawMessage("user", "hi"), RawMessage("assistant", "   "), RawMessage("user", "")],
            [("user", "hi", 0)],
            ("empty_message_dropped: turns 1, 2",),
        ),
        (
            [RawMessage("user", "hi"), RawMessage("assistant", None, _CALL), RawMessage("tool", "result")],
            [("user", "hi", 0), ("tool_call", 'search({"q": "x"})', 1), ("tool", "result", 2)],
            ("tool_call_as_context: turn 1", "tool_as_context: turn 2"),
        ),
        (
            [RawMessage("user", "hi"), RawMessage("assistant", "let me look", _CALL)],
            [("user", "hi", 0), ("assistant", "let me look", 1), ("tool_call", 'search({"q": "x"})', 1)],
            ("tool_call_as_context: turn 1",),
        ),
        (
            [RawMessage("user", "hi"), RawMessage("function", "42", name="calc")],
            [("user", "hi", 0), ("tool", "[calc] 42", 1)],
            ("tool_as_context: turn 1",),
        ),
        (
            [RawMessage("user", "a\x00b"), RawMessage(None, None, is_null=True)],
            [("user", "ab", 0)],
            ("control_characters_removed: turn 0", "null_message_dropped: turn 1"),
        ),
        (
            [RawMessage("customer", "psst"), RawMessage("user", "hi")],
            [("other", "[role 'customer'] psst", 0), ("user", "hi", 1)],
            ("unknown_role_as_context: 'customer' → other (turn 0)",),
        ),
        (
            [RawMessage("developer", "Be terse."), RawMessage("User", "hi")],
            [("system", "Be terse.", 0), ("user", "hi", 1)],
            ("role_alias: 'developer' → system (turn 0)", "role_case: 'User' → user (turn 1)"),
        ),
        ([RawMessage("user", " \x00 ")], [], ("control_characters_removed: turn 0", "empty_message_dropped: turn 0")),
        (
            [RawMessage("tool", None, _CALL)],
            [("tool_call", 'search({"q": "x"})', 0)],
            ("tool_as_context: turn 0", "tool_call_as_context: turn 0"),
        ),
    ],
    ids=[
        "clean",
        "sharegpt",
        "empty-dropped",
        "tool-call-only",
        "reply-and-call",
        "function-name",
        "nul-and-null",
        "unknown-role",
        "developer-and-case",
        "nothing-left",
        "tool-calls-on-any-role",
    ],
)
def test_normalise_messages(raw: list[RawMessage], expected: list[tuple], repairs: tuple[str, ...]) -> None:
    normalised = normalise_messages(raw)
    assert _roles(normalised.messages) == expected
    assert normalised.repairs == repairs
    assert repair_kinds(normalised.repairs) <= set(REPAIR_KINDS)


def test_repair_kind_of_an_entry() -> None:
    assert repair_kind("role_alias: 'human' → user (turn 0)") == "role_alias"
    assert repair_kind("empty_message_dropped: turns 1, 2") == "empty_message_dropped"


def test_readme_lists_every_repair_kind() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| repair kind | meaning |")[1].split("\n\n")[0]
    listed = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert listed == list(REPAIR_KINDS)
