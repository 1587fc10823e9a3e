"""One harmful conversation in every formatting variant real logs have: each is judged, its repairs recorded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.job.moderate import run
from policies import load_policy_registry
from scripts.generate_format_variants import REPLY, FormatVariant, format_variants, write_format_variants
from transforms.engines.fake_engine import count_words
from transforms.io.column_map import parse_column_map
from transforms.io.read_logs import read_conversations_from_file
from transforms.prompts.units import make_units
from transforms.records import Conversation, DeadLetter

DEFAULT = load_policy_registry().policy("rsafe-default")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("variants")
    write_format_variants(out)
    return out


def _read(corpus: Path, variant: FormatVariant, strict: bool = False) -> list:
    path = str(corpus / variant.file_name)
    return list(read_conversations_from_file(path, strict=strict, column_map=parse_column_map(variant.column_map)))


def test_the_corpus_covers_what_the_issue_names() -> None:
    variants = format_variants()
    assert len({v.name for v in variants}) == len(variants) >= 12
    kinds = set().union(*(v.repairs for v in variants))
    assert kinds >= {"role_alias", "role_case", "tool_as_context", "tool_call_as_context", "empty_message_dropped"}
    assert kinds >= {"control_characters_removed", "non_text_part_placeholder", "content_json_parts"}


@pytest.mark.parametrize("variant", format_variants(), ids=lambda v: v.name)
def test_variant_is_judged_with_its_repairs(variant: FormatVariant, corpus: Path) -> None:
    (conversation,) = _read(corpus, variant)
    assert isinstance(conversation, Conversation), conversation
    assert conversation.conversation_id == variant.conversation_id
    assert {entry.split(":")[0] for entry in conversation.input_repairs} == variant.repairs
    units = make_units(conversation, DEFAULT, "rsafe", "m", count_words)
    assert tuple((u.unit, u.turn_index) for u in units) == variant.judged
    response = next(u for u in units if u.unit == "response")
    block = response.prompt.split("<BEGIN CONVERSATION>")[1].split("<END CONVERSATION>")[0]
    assert block.rstrip().endswith(f"Agent: {REPLY}")  # the reply after the tool output is the judged turn
    for line in variant.response_sees:
        assert line in block
    turns = [line for line in block.splitlines() if line.startswith(("User:", "Agent:"))]
    assert not any("Result:" in line or "web_search(" in line for line in turns)  # context is never a turn
    assert "\x00" not in block and "bomb" in block


def test_strict_input_keeps_the_old_rules(corpus: Path) -> None:
    outcome = {}
    for variant in format_variants():
        (item,) = _read(corpus, variant, strict=True)
        outcome[variant.name] = item.error_kind if isinstance(item, DeadLetter) else "judged"
    assert outcome == {
        "openai_chat_export": "judged",
        "sharegpt": "wrong_column_type",  # from/value fields
        "tool_call": "empty_content",  # the assistant message carrying the call has no content
        "parallel_tool_calls": "empty_content",
        "legacy_function_call": "empty_content",
        "multimodal_parts": "wrong_column_type",  # content is a list
        "json_string_parts": "judged",  # as the raw JSON text
        "capitalised_roles": "unknown_role",
        "trailing_empty_message": "empty_content",
        "nul_byte": "invalid_text",
        "invalid_utf8": "invalid_text",
        "developer_role": "unknown_role",
        "turn_per_row_agent_log": "empty_content",
    }


def test_every_variant_gets_its_verdicts_end_to_end(corpus: Path, tmp_path: Path) -> None:
    variants = format_variants()
    out = tmp_path / "out"
    manifests = []
    for column_map in sorted({v.column_map for v in variants}):
        files = [str(corpus / v.file_name) for v in variants if v.column_map == column_map]
        argv = ["--engine", "fake", "--output", str(out), "--run-id", f"run-{len(manifests)}"]
        argv += [arg for path in files for arg in ("--input", path)]
        manifests.append(run(argv + (["--column-map", column_map] if column_map else [])))
    assert all(m.status == "succeeded" and not m.error_counts for m in manifests)
    rows = [row for path in sorted((out / "verdicts").rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    for variant in variants:
        mine = [r for r in rows if r["conversation_id"] == variant.conversation_id]
        assert tuple(sorted((r["unit"], r["turn_index"]) for r in mine)) == variant.judged, variant.name
        assert all({e.split(":")[0] for e in r["input_repairs"]} == variant.repairs for r in mine)
        assert {r["verdict"] for r in mine if r["unit"] == "response"} == {"unsafe"}, variant.name
    repaired = Counter(kind for manifest in manifests for kind, n in manifest.input_repairs.items() for _ in range(n))
    assert repaired == Counter(kind for v in variants for kind in v.repairs)
