"""Tests for parsing the model's output: the last boxed verdict, its reasoning, and listed categories."""

from __future__ import annotations

import pytest

from transforms.judging.verdict_parsing import (
    extract_reasoning,
    last_box_content,
    normalize_verdict,
    parse_categories,
    parse_output,
)


def test_well_formed_output():
    text = "<think>\nThe user asks how to bake bread. Harmless.\n</think>\n\\boxed{safe}"
    parsed = parse_output(text, "stop")
    assert parsed.outcome == "safe"
    assert parsed.reasoning == "The user asks how to bake bread. Harmless."
    assert parsed.box_start == text.index("\\boxed{") + len("\\boxed{")
    assert text[parsed.box_start :].startswith("safe}")


def test_text_wrapped_verdict():
    assert parse_output("<think>bad</think> \\boxed{\\text{Unsafe}}", "stop").outcome == "unsafe"
    assert parse_output("\\boxed{\\textbf{ \\text{SAFE} }}", "stop").outcome == "safe"


def test_last_box_wins():
    text = "Maybe \\boxed{unsafe}? On reflection no.\n\\boxed{safe}"
    parsed = parse_output(text, "stop")
    assert parsed.outcome == "safe"
    assert parsed.box_start == text.rindex("\\boxed{") + len("\\boxed{")
    assert parse_output("\\boxed{safe} then \\boxed{unsafe}", "stop").outcome == "unsafe"


@pytest.mark.parametrize("finish_reason", ["stop", None, "error"])
def test_no_box_is_a_parse_error(finish_reason):
    parsed = parse_output("<think>I am not sure.</think> It is fine I guess.", finish_reason)
    assert parsed.outcome == "parse_error"
    assert parsed.box_start is None
    assert parsed.reasoning == "I am not sure."


def test_no_box_at_the_token_limit_is_truncated():
    parsed = parse_output("<think>Let me think about this very long", "length")
    assert parsed.outcome == "truncated"
    assert parsed.box_start is None
    assert parsed.reasoning == "Let me think about this very long"


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ("  UnSafe \n", "unsafe"),
        ("\tSAFE", "safe"),
        ("'safe'", "safe"),
        ('"Unsafe".', "unsafe"),
        ("`safe`", "safe"),
        ("\\text{ safe }", "safe"),
        ("\\mathrm{unsafe}", "unsafe"),
    ],
)
def test_case_whitespace_and_quotes(box, expected):
    assert parse_output(f"\\boxed{{{box}}}", "stop").outcome == expected
    assert normalize_verdict(box) == expected


def test_nested_braces_are_balanced():
    text = "\\boxed{\\text{\\textbf{unsafe}}} trailing } brace"
    assert last_box_content(text) == ("\\text{\\textbf{unsafe}}", len("\\boxed{"))
    assert parse_output(text, "stop").outcome == "unsafe"


def test_unclosed_last_box_falls_back_to_an_earlier_closed_one_unless_cut_by_the_limit():
    text = "<think>x</think>\\boxed{unsafe}\nWait, let me redo: \\boxed{saf"
    found = last_box_content(text)
    assert found is not None and found[0] == "unsafe"
    assert last_box_content(text, earlier_if_unclosed=False) is None
    parsed = parse_output(text, "stop")
    assert parsed.outcome == "unsafe"
    assert parsed.box_start == text.index("\\boxed{") + len("\\boxed{")
    # the token limit hit inside the second box: the model was still answering, so the answer is truncated
    cut = parse_output("<think>x</think>\\boxed{safe} … \\boxed{uns", "length")
    assert cut.outcome == "truncated" and cut.box_start is None


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("<think>x</think>\\boxed{unsafe}", "unsafe"),  # the limit hit right at the end of the box
        ("<think>x</think>\\boxed{unsafe}\n  ", "unsafe"),
        ("<think>x</think>\\boxed{unsafe} but on second thought the", "truncated"),
        ("<think>x</think>\\boxed{safe}\nCategories: U", "truncated"),
    ],
)
def test_cut_by_the_limit_counts_only_a_complete_last_box_with_nothing_after_it(text, outcome):
    assert parse_output(text, "length").outcome == outcome
    assert parse_output(text, "stop").outcome in {"safe", "unsafe"}


def test_only_an_unclosed_box():
    assert last_box_content("\\boxed{safe") is None
    assert parse_output("\\boxed{safe", "length").outcome == "truncated"
    assert parse_output("\\boxed{safe", "stop").outcome == "parse_error"


@pytest.mark.parametrize("box", ["maybe", "safe-ish", "safe or unsafe", "", "  ", "{}", "not unsafe", "1"])
def test_garbage_in_the_box_is_a_parse_error(box):
    parsed = parse_output(f"<think>hmm</think>\\boxed{{{box}}}", "stop")
    assert parsed.outcome == "parse_error"
    assert parsed.box_start is None
    assert normalize_verdict(box) is None


def test_extract_reasoning():
    assert extract_reasoning("<think>\n  step one\n  step two\n</think>\n\\boxed{safe}") == "step one\n  step two"
    assert extract_reasoning("<think>unclosed thought that runs out") == "unclosed thought that runs out"
    assert extract_reasoning("  no tags at all \\boxed{safe} ") == "no tags at all \\boxed{safe}"
    assert extract_reasoning("<think>first</think> <think>second</think>") == "first"
    assert extract_reasoning("") == ""


ALLOWED = ("U1", "U2", "K1", "Sx-3")


@pytest.mark.parametrize(
    ("tail", "known", "unknown"),
    [
        ("Categories: U1, K1", ["U1", "K1"], []),
        ("categories: u1; k1", ["U1", "K1"], []),  # case-insensitive, returned in the policy's spelling
        ("CATEGORIES :  sx-3 (U2).", ["Sx-3", "U2"], []),
        ("Categories: U1, Z9, U1, u1, Q7", ["U1"], ["Z9", "Q7"]),  # duplicates once, unknown codes counted
        ("Categories: Z9, Z9, U1, Z9", ["U1"], ["Z9"]),  # an unknown code is reported once
        ("Categories: none", [], []),
        ("Categories: N/A", [], []),
        ("Categories: -", [], []),
        ("Categories:", [], []),
        ("No categories line here.", [], []),
        ("Categories: U1\nCategories: U2", ["U2"], []),  # the last line counts
    ],
)
def test_parse_categories(tail, known, unknown):
    text = f"<think>Categories: U2 maybe</think>\n\\boxed{{unsafe}}\n{tail}"
    assert parse_categories(text, ALLOWED) == (known, unknown)


def test_parse_categories_ignores_lines_before_the_last_box():
    text = "<think>Categories: U1</think>\\boxed{unsafe}"
    assert parse_categories(text, ALLOWED) == ([], [])
    text = "Categories: U1\n\\boxed{safe} Categories: U2 \\boxed{unsafe}"
    assert parse_categories(text, ALLOWED) == ([], [])


def test_parse_categories_without_a_box_reads_the_whole_text():
    assert parse_categories("unsafe\nCategories: k1, U9", ALLOWED) == (["K1"], ["U9"])
