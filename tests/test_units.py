"""Tests for turning conversations into moderation units under each tenant's policy."""

from __future__ import annotations

import datetime as dt

import pytest
from apache_beam.pvalue import TaggedOutput

from policies import load_policy_registry
from transforms.engines.fake_engine import FakeEngineSpec, count_words
from transforms.prompts.render import TEMPLATES
from transforms.prompts.units import DEAD_LETTER, MakeUnitsDoFn, judged_turns, make_units, stable_key
from transforms.records import Conversation, DeadLetter, Message, ModerationUnit

REGISTRY = load_policy_registry()
DEFAULT = REGISTRY.policy("rsafe-default")
KIDS = REGISTRY.policy("kids-learning")
RESPONSES_ONLY = REGISTRY.policy("security-research")
T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)

CHAT = (
    Message("system", "You are helpful."),
    Message("user", "What is 2 + 2?"),
    Message("assistant", "4."),
    Message("user", "And 3 + 3?"),
    Message("assistant", "6."),
)
ENDS_WITH_USER = (*CHAT, Message("user", "Thanks! And 4 + 4?"))


def conversation(tenant: str, messages=CHAT, cid: str = "conv-1", created_at: dt.datetime = T0) -> Conversation:
    return Conversation(cid, tenant, created_at, tuple(messages), "logs/file.parquet", 3, 1)


# --- judged_turns --------------------------------------------------------------------------------------------------


def test_policies_under_test_are_what_the_tests_assume():
    assert (DEFAULT.scope, DEFAULT.units) == ("last_turn", ("prompt", "response"))
    assert (KIDS.scope, KIDS.units) == ("every_turn", ("prompt", "response"))
    assert (RESPONSES_ONLY.scope, RESPONSES_ONLY.units) == ("last_turn", ("response",))


def test_judged_turns_last_turn():
    assert judged_turns(CHAT, DEFAULT) == [("prompt", 3), ("response", 4)]
    assert judged_turns(ENDS_WITH_USER, DEFAULT) == [("response", 4), ("prompt", 5)]
    assert judged_turns(CHAT[:2], DEFAULT) == [("prompt", 1)]


def test_judged_turns_every_turn():
    assert judged_turns(CHAT, KIDS) == [("prompt", 1), ("response", 2), ("prompt", 3), ("response", 4)]
    assert judged_turns(ENDS_WITH_USER, KIDS)[-1] == ("prompt", 5)
    assert len(judged_turns(ENDS_WITH_USER, KIDS)) == 5


def test_judged_turns_responses_only():
    assert judged_turns(CHAT, RESPONSES_ONLY) == [("response", 4)]
    assert judged_turns(ENDS_WITH_USER, RESPONSES_ONLY) == [("response", 4)]
    assert judged_turns(CHAT[:2], RESPONSES_ONLY) == []
    every = RESPONSES_ONLY.model_copy(update={"scope": "every_turn"})
    assert judged_turns(CHAT, every) == [("response", 2), ("response", 4)]


def test_judged_turns_never_include_system_messages():
    messages = (Message("system", "a"), Message("user", "b"), Message("system", "c"), Message("assistant", "d"))
    for policy in (DEFAULT, KIDS, RESPONSES_ONLY):
        assert all(messages[i].role != "system" for _, i in judged_turns(messages, policy))


# --- make_units ----------------------------------------------------------------------------------------------------


def units_for(tenant: str, messages=CHAT, cid: str = "conv-1", model: str = "model-a", template: str = "rsafe"):
    policy = REGISTRY.for_tenant(tenant)
    return make_units(conversation(tenant, messages, cid), policy, template, model, count_words)


def test_two_tenants_with_different_policies_get_different_units():
    kids, globex = units_for("acme-kids"), units_for("globex")
    assert [(u.unit, u.turn_index) for u in kids] == [("prompt", 1), ("response", 2), ("prompt", 3), ("response", 4)]
    assert [(u.unit, u.turn_index) for u in globex] == [("prompt", 3), ("response", 4)]
    assert {u.policy_id for u in kids} == {"kids-learning"} and {u.policy_id for u in globex} == {"rsafe-default"}
    assert {u.policy_version for u in kids} == {KIDS.version}
    assert {u.policy_version for u in globex} == {DEFAULT.version}
    assert KIDS.version != DEFAULT.version
    kids_last = {u.unit: u for u in kids if u.turn_index >= 3}
    for globex_unit in globex:
        kids_unit = kids_last[globex_unit.unit]
        assert kids_unit.prompt != globex_unit.prompt
        assert "K1 - Romance & Dating" in kids_unit.prompt and "K1 -" not in globex_unit.prompt
        assert kids_unit.content_key != globex_unit.content_key
        assert kids_unit.resume_key != globex_unit.resume_key
    assert {u.on_parse_error for u in kids} == {"unsafe"} and {u.on_parse_error for u in globex} == {"flag"}
    assert kids[0].allowed_codes == KIDS.category_codes


def test_unit_fields():
    units = units_for("globex")
    prompt, response = units
    for u in units:
        assert (u.conversation_id, u.tenant_id, u.date) == ("conv-1", "globex", "2026-11-26")
        assert u.template_version == TEMPLATES["rsafe"]
        assert u.source_file == "logs/file.parquet" and u.source_rows == 1
        assert not u.truncated_input and u.context_turns_dropped == 0
        assert len(u.content_key) == 32 and len(u.resume_key) == 32
    assert "And 3 + 3?" in prompt.prompt and "6." not in prompt.prompt
    assert "User: And 3 + 3?" in response.prompt and "Agent: 6." in response.prompt
    assert "You are helpful." not in prompt.prompt


def test_keys_are_stable_and_say_what_they_should():
    first, again = units_for("globex"), units_for("globex")
    assert [(u.content_key, u.resume_key) for u in first] == [(u.content_key, u.resume_key) for u in again]
    assert first == again
    other_conversation = units_for("globex", cid="conv-2")
    assert [u.content_key for u in other_conversation] == [u.content_key for u in first]  # same work
    assert all(a.resume_key != b.resume_key for a, b in zip(first, other_conversation, strict=True))
    other_model = units_for("globex", model="model-b")
    assert all(a.content_key != b.content_key for a, b in zip(first, other_model, strict=True))
    assert all(a.resume_key != b.resume_key for a, b in zip(first, other_model, strict=True))
    other_template = units_for("globex", template="rsafe-categories")
    assert all(a.resume_key != b.resume_key for a, b in zip(first, other_template, strict=True))
    # same policy for another tenant: identical work, so identical content keys
    assert [u.content_key for u in units_for("some-new-tenant")] == [u.content_key for u in first]
    assert len({u.resume_key for u in first}) == len(first)
    assert stable_key("a", 1) == stable_key("a", 1) != stable_key("a", 2)
    assert stable_key("ab", "c") != stable_key("a", "bc")


def test_long_conversations_are_fitted_to_the_policy_budget():
    long_turn = " ".join(f"w{i}" for i in range(3000))
    messages = (Message("user", long_turn), Message("assistant", "ok"), Message("user", "short question"))
    (response, prompt) = units_for("globex", messages)
    assert response.truncated_input is False  # the user turn before the reply is cut first
    assert "characters omitted" in response.prompt and response.context_turns_dropped == 0
    assert prompt.context_turns_dropped == 1 and not prompt.truncated_input  # the long turn went whole
    assert "[1 earlier turn(s) omitted]" in prompt.prompt and "Agent: ok" in prompt.prompt
    assert "w2999" not in prompt.prompt
    cut = units_for("globex", (Message("user", long_turn),))[0]
    assert cut.truncated_input


# --- MakeUnitsDoFn ---------------------------------------------------------------------------------------------------


def run_dofn(conv: Conversation, reject_unknown_tenants: bool = False) -> list:
    registry = load_policy_registry(reject_unknown_tenants=reject_unknown_tenants)
    dofn = MakeUnitsDoFn(registry, "rsafe", "model-a", FakeEngineSpec())
    dofn.setup()
    return list(dofn.process(conv))


def dead_letter_of(outputs: list) -> DeadLetter:
    assert len(outputs) == 1
    (output,) = outputs
    assert isinstance(output, TaggedOutput) and output.tag == DEAD_LETTER
    assert isinstance(output.value, DeadLetter)
    return output.value


@pytest.mark.parametrize("tenant", ["../x", "a/b", "", ".hidden", "..", "a b", "x" * 65, "acme-kids\n"])
def test_path_unsafe_tenant_is_a_dead_letter(tenant):
    letter = dead_letter_of(run_dofn(conversation(tenant)))
    assert letter.error_kind == "unsafe_tenant_id" and letter.stage == "policy"
    assert letter.conversation_id == "conv-1" and letter.tenant_id == tenant
    assert letter.rows == 1 and letter.row == 3 and letter.unit is None
    assert "logs/file.parquet row 3" in letter.message and "conv-1" in letter.message


def test_path_unsafe_tenant_is_rejected_even_when_unknown_tenants_are_allowed():
    assert dead_letter_of(run_dofn(conversation("../x"), reject_unknown_tenants=False)).error_kind == (
        "unsafe_tenant_id"
    )


def test_unknown_tenant_with_reject_unknown_tenants():
    letter = dead_letter_of(run_dofn(conversation("initech"), reject_unknown_tenants=True))
    assert letter.error_kind == "unknown_tenant" and letter.stage == "policy"
    assert "initech" in letter.message and letter.rows == 1


def test_unknown_tenant_gets_the_default_policy_otherwise():
    outputs = run_dofn(conversation("initech"))
    assert all(isinstance(u, ModerationUnit) for u in outputs)
    assert [(u.unit, u.turn_index, u.policy_id) for u in outputs] == [
        ("prompt", 3, "rsafe-default"),
        ("response", 4, "rsafe-default"),
    ]


def test_known_tenants_get_their_units_when_strict():
    outputs = run_dofn(conversation("acme-kids"), reject_unknown_tenants=True)
    assert len(outputs) == 4 and all(isinstance(u, ModerationUnit) for u in outputs)
    assert {u.tenant_id for u in outputs} == {"acme-kids"}


def test_nothing_to_judge_is_a_dead_letter():
    letter = dead_letter_of(run_dofn(conversation("redteam-labs", CHAT[:2])))
    assert letter.error_kind == "nothing_to_judge" and letter.rows == 1
    assert "security-research" in letter.message


def test_units_of_a_normalised_conversation_name_the_turn_as_read_and_carry_its_repairs():
    messages = (
        Message("user", "How do I pick a lock?", 0),
        Message("tool_call", 'search({"q": "lock picking"})', 1),
        Message("tool", "[search] step-by-step guide", 2),
        Message("assistant", "Here is how: ...", 3),  # message 4 (empty) was dropped
        Message("user", "thanks", 5),
    )
    repairs = ("tool_call_as_context: turn 1", "tool_as_context: turn 2", "empty_message_dropped: turn 4")
    convo = Conversation("c-tools", "globex", T0, messages, "logs/f.parquet", 0, 1, input_repairs=repairs)
    units = make_units(convo, DEFAULT, "rsafe", "m", count_words)
    assert [(u.unit, u.turn_index) for u in units] == [("response", 3), ("prompt", 5)]
    response = units[0]
    assert "Tool: [search] step-by-step guide\n" in response.prompt and "Agent: Here is how" in response.prompt
    assert all(u.input_repairs == repairs for u in units)
    assert response.resume_key == stable_key("c-tools", "response", 3, DEFAULT.version, "m", TEMPLATES["rsafe"])
