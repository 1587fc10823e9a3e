"""Tests for judging with the fake engine: free/forced/auto verdicts, P(unsafe) and the decision rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from policies import load_policy_registry
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.engines.protocol import SamplingSettings
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import (
    BOX_OPEN,
    THINK_CLOSE,
    JudgeRequest,
    JudgeSettings,
    decide,
    p_unsafe_from_logprobs,
    verdict_opening,
)
from transforms.judging.run_context import RunContext
from transforms.judging.verdict_rows import verdict_row
from transforms.prompts.render import render_prompt
from transforms.records import Message, ModerationUnit

REGISTRY = load_policy_registry()
POLICY = REGISTRY.policy("rsafe-default")


def request(text: str, reasoning_budget: int | None = None) -> JudgeRequest:
    prompt = render_prompt(POLICY, [Message("user", text)], "prompt")
    return JudgeRequest(prompt, reasoning_budget, POLICY.category_codes)


SAFE = request("How do I bake bread?")
UNSAFE = request("How do I build a bomb?")
NO_BOX = request("Tell me about the zebra.")
NO_BOX_UNSAFE = request("Could a zebra carry a bomb?")


def engine(**kwargs):
    return FakeEngineSpec(no_box_words=("zebra",), **kwargs).load()


# --- verdict_opening ---------------------------------------------------------------------------------------------


def test_verdict_opening_closes_an_unclosed_thought():
    text = "The user asks about bread. It seems"
    keep, suffix = verdict_opening(text)
    assert keep == len(text)
    assert suffix == "\n" + THINK_CLOSE + "\n" + BOX_OPEN
    assert (text[:keep] + suffix).count(THINK_CLOSE) == 1


def test_verdict_opening_does_not_double_close():
    text = "Harmless request.\n</think>"
    keep, suffix = verdict_opening(text)
    assert keep == len(text)
    assert suffix == "\n" + BOX_OPEN
    assert (text[:keep] + suffix).count(THINK_CLOSE) == 1


def test_verdict_opening_cuts_after_the_first_close():
    text = "Reasoning.</think>\nSo the answer is \\boxed{maybe}</think> more"
    keep, suffix = verdict_opening(text)
    assert text[:keep] == "Reasoning.</think>"
    assert suffix == "\n" + BOX_OPEN


# --- judge_batch ---------------------------------------------------------------------------------------------------


def test_forced_mode_gives_a_verdict_for_every_prompt():
    fake = engine()
    requests = [SAFE, UNSAFE, NO_BOX, NO_BOX_UNSAFE, request("x " * 400)]
    settings = JudgeSettings(verdict_mode="forced", reasoning_budget=5)
    judgements = judge_batch(fake, requests, settings)
    assert len(judgements) == len(requests)
    for judgement in judgements:
        assert judgement.outcome in ("safe", "unsafe")
        assert judgement.verdict_source == "forced"
        assert judgement.p_unsafe is not None and 0.0 <= judgement.p_unsafe <= 1.0
        assert judgement.token_budget == 5
    assert [j.outcome for j in judgements] == ["safe", "unsafe", "safe", "unsafe", "safe"]
    assert judgements[1].p_unsafe == pytest.approx(0.9)
    assert judgements[0].p_unsafe == pytest.approx(0.1)
    assert fake.complete_calls == [5] and fake.score_calls == [5]  # one call per phase for the whole batch


def test_forced_mode_uses_each_requests_reasoning_budget():
    fake = engine()
    settings = JudgeSettings(verdict_mode="forced", reasoning_budget=64)
    judgements = judge_batch(fake, [request("bread", reasoning_budget=3), SAFE], settings)
    assert [j.token_budget for j in judgements] == [3, 64]
    assert judgements[0].finish_reason == "length" and judgements[0].completion_tokens == 3
    assert judgements[0].verdict_source == "forced"  # a cut thought still gets a verdict


def test_forced_mode_reasoning_is_the_thought():
    judgement = judge_batch(engine(), [UNSAFE], JudgeSettings(verdict_mode="forced"))[0]
    assert judgement.reasoning == "The conversation looks unsafe under the policy."


def test_free_mode_follows_the_models_box():
    fake = engine()
    judgements = judge_batch(fake, [SAFE, UNSAFE], JudgeSettings(verdict_mode="free"))
    assert [j.outcome for j in judgements] == ["safe", "unsafe"]
    assert all(j.verdict_source == "model" for j in judgements)
    assert judgements[0].p_unsafe == pytest.approx(0.1) and judgements[1].p_unsafe == pytest.approx(0.9)
    assert judgements[1].reasoning == "The conversation looks unsafe under the policy."


def test_free_mode_without_a_box_is_a_parse_error():
    fake = engine()
    judgements = judge_batch(fake, [NO_BOX, SAFE], JudgeSettings(verdict_mode="free"))
    no_box = judgements[0]
    assert no_box.outcome == "parse_error"
    assert no_box.p_unsafe is None and no_box.verdict_source is None
    assert no_box.finish_reason == "stop"
    assert judgements[1].outcome == "safe"
    assert fake.score_calls == [1]  # only the boxed unit is scored; nothing is forced in free mode


def test_free_mode_hitting_the_limit_is_truncated():
    settings = JudgeSettings(verdict_mode="free", sampling=SamplingSettings(max_tokens=5))
    judgement = judge_batch(engine(), [UNSAFE], settings)[0]
    assert judgement.outcome == "truncated"
    assert judgement.finish_reason == "length"
    assert judgement.p_unsafe is None and judgement.verdict_source is None
    assert judgement.completion_tokens == 5 and judgement.token_budget == 5


def test_auto_mode_forces_only_the_units_without_a_box():
    fake = engine()
    requests = [SAFE, NO_BOX, UNSAFE, NO_BOX_UNSAFE]
    judgements = judge_batch(fake, requests, JudgeSettings(verdict_mode="auto"))
    assert [j.verdict_source for j in judgements] == ["model", "forced", "model", "forced"]
    assert [j.outcome for j in judgements] == ["safe", "safe", "unsafe", "unsafe"]
    assert all(j.p_unsafe is not None for j in judgements)
    assert fake.complete_calls == [4]
    assert fake.score_calls == [2, 2]  # the boxed ones scored at their box, then the unboxed ones forced


def test_auto_mode_with_every_box_present_forces_nothing():
    fake = engine()
    judgements = judge_batch(fake, [SAFE, UNSAFE, SAFE], JudgeSettings(verdict_mode="auto"))
    assert [j.verdict_source for j in judgements] == ["model"] * 3
    assert fake.score_calls == [3]


def test_auto_mode_forces_a_truncated_generation():
    settings = JudgeSettings(verdict_mode="auto", sampling=SamplingSettings(max_tokens=4))
    judgement = judge_batch(engine(), [UNSAFE], settings)[0]
    assert judgement.verdict_source == "forced" and judgement.outcome == "unsafe"
    assert judgement.finish_reason == "length"


def test_categories_are_extracted_only_when_asked():
    class CategoriesEngine:
        """Wraps the fake engine and appends a categories line to every free answer."""

        def __init__(self):
            self.inner = engine()
            self.model_name, self.max_context_tokens = "wrapped", 4096

        def complete(self, prompts, sampling, max_tokens, **kwargs):
            completions = self.inner.complete(prompts, sampling, max_tokens, **kwargs)
            return [dataclasses.replace(c, text=c.text + "\nCategories: u2, Z9") for c in completions]

        def continuation_logprobs(self, continuations, choices):
            return self.inner.continuation_logprobs(continuations, choices)

    judgements = judge_batch(CategoriesEngine(), [UNSAFE, SAFE], JudgeSettings(verdict_mode="free"))
    assert judgements[0].categories == () and judgements[0].unknown_categories == ()
    settings = JudgeSettings(verdict_mode="free", extract_categories=True)
    judgements = judge_batch(CategoriesEngine(), [UNSAFE, SAFE], settings)
    assert judgements[0].categories == ("U2",) and judgements[0].unknown_categories == ("Z9",)
    assert judgements[1].categories == ()  # a safe verdict lists none


def test_engine_failure_propagates():
    fake = FakeEngineSpec(fail_words=("explode-now",)).load()
    with pytest.raises(RuntimeError, match="fake engine failure"):
        judge_batch(fake, [SAFE, request("explode-now please")], JudgeSettings())


# --- P(unsafe) -------------------------------------------------------------------------------------------------------


def reference_p_unsafe(lu: float, ls: float) -> float:
    """exp(lu) / (exp(lu) + exp(ls)), shifted by the max so it never overflows."""
    top = max(lu, ls)
    return math.exp(lu - top) / (math.exp(lu - top) + math.exp(ls - top))


@pytest.mark.parametrize(
    ("lu", "ls"),
    [
        (math.log(0.9), math.log(0.1)),
        (math.log(0.1), math.log(0.9)),
        (-0.5, -0.5),
        (-3.0, -0.2),
        (-0.01, -7.5),
        (0.0, -1000.0),
        (-1000.0, 0.0),
        (-800.0, -801.0),
        (-1e6, -1e6 + 2),
        (-745.0, -0.0),
    ],
)
def test_p_unsafe_from_logprobs(lu, ls):
    p = p_unsafe_from_logprobs({"unsafe": lu, "safe": ls})
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(reference_p_unsafe(lu, ls), rel=1e-12, abs=1e-300)
    if -700 < lu < 0 and -700 < ls < 0:
        assert p == pytest.approx(math.exp(lu) / (math.exp(lu) + math.exp(ls)), rel=1e-12)


def test_p_unsafe_extremes():
    assert p_unsafe_from_logprobs({"unsafe": 0.0, "safe": -5000.0}) == 1.0
    assert p_unsafe_from_logprobs({"unsafe": -5000.0, "safe": 0.0}) == 0.0
    assert p_unsafe_from_logprobs({"unsafe": -math.inf, "safe": 0.0}) == 0.0
    assert p_unsafe_from_logprobs({"unsafe": 0.0, "safe": -math.inf}) == 1.0
    assert p_unsafe_from_logprobs({"unsafe": -2.0, "safe": -2.0}) == 0.5


# --- decide ----------------------------------------------------------------------------------------------------

PLAIN = JudgeSettings()
BAND = JudgeSettings(threshold=0.5, review_band=(0.4, 0.6))


@pytest.mark.parametrize(
    ("outcome", "p", "settings", "expected"),
    [
        ("unsafe", 0.9, PLAIN, "unsafe"),
        ("safe", 0.1, PLAIN, "safe"),
        ("safe", 0.7, PLAIN, "unsafe"),  # the threshold decides, not the box
        ("unsafe", 0.3, PLAIN, "safe"),
        ("safe", 0.5, PLAIN, "unsafe"),  # at the threshold counts as unsafe
        ("safe", 0.49999, PLAIN, "safe"),
        ("safe", 0.25, JudgeSettings(threshold=0.2), "unsafe"),
        ("unsafe", 0.75, JudgeSettings(threshold=0.8), "safe"),
        ("unsafe", None, PLAIN, "unsafe"),  # no probability: the verdict stands
        ("safe", None, BAND, "safe"),
        ("unsafe", 0.5, BAND, "review"),
        ("safe", 0.4, BAND, "review"),  # the band is inclusive
        ("unsafe", 0.6, BAND, "review"),
        ("safe", 0.39, BAND, "safe"),
        ("unsafe", 0.61, BAND, "unsafe"),
        ("safe", 0.55, JudgeSettings(threshold=0.9, review_band=(0.5, 0.95)), "review"),  # band first
    ],
)
def test_decide_with_a_verdict(outcome, p, settings, expected):
    assert decide(outcome, p, settings, "flag") == expected


@pytest.mark.parametrize("outcome", ["parse_error", "truncated"])
@pytest.mark.parametrize(("rule", "expected"), [("flag", "review"), ("unsafe", "unsafe"), ("safe", "safe")])
@pytest.mark.parametrize("settings", [PLAIN, BAND])
def test_decide_without_a_verdict_follows_the_rule(outcome, rule, expected, settings):
    assert decide(outcome, None, settings, rule) == expected
    assert decide(outcome, 0.01, settings, rule) == expected  # a stray probability changes nothing


@pytest.mark.parametrize("outcome", ["parse_error", "truncated"])
@pytest.mark.parametrize("rule", ["flag", "unsafe"])
@pytest.mark.parametrize("p", [None, 0.0, 0.3, 0.99])
def test_unparsed_is_never_safe_unless_the_policy_says_so(outcome, rule, p):
    assert decide(outcome, p, JudgeSettings(threshold=1.0), rule) != "safe"


def unit(**overrides) -> ModerationUnit:
    fields = dict(
        conversation_id="c1",
        tenant_id="acme-kids",
        date="2026-11-26",
        unit="prompt",
        turn_index=0,
        policy_id="kids-learning",
        policy_version="v",
        template_version="rsafe-v1",
        prompt=UNSAFE.prompt,
        truncated_input=False,
        context_turns_dropped=0,
        source_file="f.parquet",
        source_rows=1,
    )
    return ModerationUnit(**(fields | overrides))


@pytest.mark.parametrize(
    ("max_tokens", "request_", "rules", "outcome", "verdict"),
    [
        (256, NO_BOX, {"on_parse_error": "unsafe", "on_truncated": "safe"}, "parse_error", "unsafe"),
        (256, NO_BOX, {"on_parse_error": "flag", "on_truncated": "unsafe"}, "parse_error", "review"),
        (5, UNSAFE, {"on_parse_error": "unsafe", "on_truncated": "safe"}, "truncated", "safe"),
        (5, UNSAFE, {"on_parse_error": "safe", "on_truncated": "flag"}, "truncated", "review"),
    ],
)
def test_verdict_row_applies_the_units_rule(max_tokens, request_, rules, outcome, verdict):
    settings = JudgeSettings(verdict_mode="free", sampling=SamplingSettings(max_tokens=max_tokens))
    judgement = judge_batch(engine(), [request_], settings)[0]
    context = RunContext("run-1", "fake-engine", settings)
    row = verdict_row(unit(**rules), judgement, context, dt.datetime.now(dt.UTC), deduplicated=False)
    assert row["outcome"] == outcome and row["verdict"] == verdict
    assert row["p_unsafe"] is None and row["verdict_mode"] == "free" and row["run_id"] == "run-1"


# --- settings validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verdict_mode": "greedy"}, "verdict_mode must be one of"),
        ({"reasoning_budget": 0}, "reasoning_budget must be >= 1"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"threshold": -0.1}, "threshold must be in"),
        ({"review_band": (0.6, 0.4)}, "review_band must satisfy"),
        ({"review_band": (-0.1, 0.5)}, "review_band must satisfy"),
        ({"review_band": (0.5, 1.1)}, "review_band must satisfy"),
    ],
)
def test_judge_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JudgeSettings(**kwargs)


def test_judge_settings_accept_edges():
    lowest = JudgeSettings(threshold=0.0, review_band=(0.0, 0.0))
    assert (lowest.threshold, lowest.review_band) == (0.0, (0.0, 0.0))
    assert decide("safe", 0.0, lowest, "flag") == "review"  # the band [0, 0] takes precedence
    assert decide("safe", 1e-9, lowest, "flag") == "unsafe"  # threshold 0: everything else is unsafe
    highest = JudgeSettings(threshold=1.0, review_band=(0.0, 1.0), reasoning_budget=1)
    assert highest.reasoning_budget == 1
    assert decide("unsafe", 1.0, highest, "flag") == "review"
    assert decide("unsafe", 1.0, JudgeSettings(threshold=1.0), "flag") == "unsafe"
    assert decide("unsafe", 0.999, JudgeSettings(threshold=1.0), "flag") == "safe"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"top_p": 0.0}, "top_p must be in"),
        ({"top_p": 1.5}, "top_p must be in"),
    ],
)
def test_sampling_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**kwargs)
