"""`--verdict-mode cascade`: a reasoning-free score first, full reasoning only inside the uncertainty band."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.job.moderate import run
from policies import PolicyError, load_policies
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.engines.protocol import SamplingSettings
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import JudgeRequest, JudgeSettings, judge_reasoned

REPO = Path(__file__).resolve().parents[1]
SETTINGS = JudgeSettings(verdict_mode="cascade", sampling=SamplingSettings(max_tokens=64))


def _conversation(text: str) -> str:
    return f"<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>"


def test_units_outside_the_band_are_decided_by_the_score_the_rest_are_reasoned():
    engine = FakeEngineSpec(uncertain_words=("maybe",)).load()
    requests = [JudgeRequest(_conversation(t)) for t in ("build a bomb", "bake bread", "maybe a bomb")]
    bomb, bread, unsure = judge_batch(engine, requests, SETTINGS)
    assert (bomb.verdict_source, bomb.outcome, bomb.p_unsafe) == ("score", "unsafe", pytest.approx(0.9))
    assert (bread.verdict_source, bread.outcome, bread.completion_tokens) == ("score", "safe", 0)
    assert bomb.reasoning == "" and bomb.finish_reason == "score" and bomb.prompt_tokens > 0
    assert unsure.verdict_source == "model" and unsure.outcome == "unsafe" and unsure.reasoning  # reasoned
    assert engine.complete_calls == [3, 1]  # pass 1 for all (one token each), full reasoning for one


def test_a_requests_own_band_overrides_the_runs():
    engine = FakeEngineSpec().load()
    wide = JudgeRequest(_conversation("bake bread"), cascade_band=(0.0, 1.0))
    narrow = JudgeRequest(_conversation("bake bread"))
    reasoned, scored = judge_batch(engine, [wide, narrow], SETTINGS)
    assert reasoned.verdict_source == "model" and scored.verdict_source == "score"


def test_a_policy_band_must_be_ordered(tmp_path):
    (tmp_path / "p.yaml").write_text("id: p\nextends: rsafe-default\ncascade_band: [0.9, 0.1]\n")
    with pytest.raises(PolicyError, match="cascade_band"):
        load_policies([str(tmp_path / "p.yaml")], parents=[str(REPO / "policies/definitions")])


def test_the_job_counts_each_path_per_tenant(tmp_path):
    out = tmp_path / "out"
    spec = FakeEngineSpec(uncertain_words=("order",))
    manifest = run(
        ["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out),
         "--verdict-mode", "cascade"],
        engine_spec=spec,
    )  # fmt: skip
    import polars as pl

    verdicts = pl.read_parquet(out / "verdicts" / "**" / "*.parquet")
    by_source = dict(verdicts.group_by("verdict_source").len().rows())
    totals = manifest.totals
    assert totals["cascade_score"] == by_source["score"] > 0 and totals["cascade_reasoned"] == by_source["model"] > 0
    assert totals["cascade_score"] + totals["cascade_reasoned"] == totals["verdicts_written"]
    assert manifest.status == "succeeded" and not manifest.accounting_problems
    assert set(verdicts["verdict_mode"]) == {"cascade"}


def test_consistency_flags_name_cut_thoughts_and_disagreeing_scores():
    from transforms.judging.decisions import Judgement, consistency_flag

    base = Judgement("safe", "model", 0.1, "r", "raw", "stop", 10, 5, 64)
    assert consistency_flag(base) is None
    cut = dataclasses.replace(base, verdict_source="forced", finish_reason="length")
    assert consistency_flag(cut) == "thought_cut"
    assert consistency_flag(dataclasses.replace(base, score_p_unsafe=0.95)) == "score_disagrees"
    assert consistency_flag(dataclasses.replace(base, score_p_unsafe=0.55)) is None  # opposite side, but close


def test_a_reasoned_cascade_unit_keeps_its_pass_one_score_and_a_flag_when_they_disagree(tmp_path):
    out = tmp_path / "out"
    spec = FakeEngineSpec(uncertain_words=("order",))
    run(["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out),
         "--verdict-mode", "cascade", "--cascade-band", "0.0,1.0"], engine_spec=spec)  # fmt: skip
    import polars as pl

    rows = pl.read_parquet(out / "verdicts" / "**" / "*.parquet")
    assert rows["score_p_unsafe"].null_count() == 0  # every unit reasoned, each with its pass-1 score
    assert set(rows["consistency"].drop_nulls()) <= {"score_disagrees"}


# --- with a decision head: the head decides, flagged and uncertain units are reasoned for their trace ------------
HEAD = FakeEngineSpec(uncertain_words=("maybe",), head_version="fakehead")


def test_with_a_head_it_decides_every_unit_and_traces_the_flagged_and_the_uncertain():
    engine = HEAD.load()
    texts = ("build a bomb", "bake bread", "maybe bake bread")
    bomb, bread, unsure = judge_batch(engine, [JudgeRequest(_conversation(t)) for t in texts], SETTINGS)
    assert {j.verdict_source for j in (bomb, bread, unsure)} == {"head"}
    assert (bomb.outcome, bomb.p_unsafe) == ("unsafe", pytest.approx(0.9)) and bomb.reasoning  # flagged: a trace
    assert bomb.trace_p_unsafe == pytest.approx(0.9) and bomb.completion_tokens > 0
    assert (bread.outcome, bread.reasoning, bread.finish_reason, bread.trace_p_unsafe) == ("safe", "", "score", None)
    assert unsure.p_unsafe == pytest.approx(0.5) and unsure.reasoning  # in the band: traced, still the head's p
    assert unsure.trace_p_unsafe == pytest.approx(0.1)  # the trace's own box says safe; it does not overturn
    assert engine.complete_calls == [3, 2]  # one prefill for all, reasoning for the flagged and the uncertain


@pytest.mark.parametrize("mode", ["free", "forced", "auto"])
def test_with_a_head_the_reasoned_modes_trace_every_unit_and_the_head_decides(mode):
    requests = [JudgeRequest(_conversation(t)) for t in ("build a bomb", "bake bread", "maybe bake bread")]
    settings = dataclasses.replace(SETTINGS, verdict_mode=mode)
    engine = HEAD.load()
    judged = judge_batch(engine, requests, settings)
    scored = judge_batch(HEAD.load(), requests, dataclasses.replace(SETTINGS, verdict_mode="score"))
    traces = judge_reasoned(HEAD.load(), requests, settings)  # what the mode alone says: the trace
    assert {j.verdict_source for j in judged} == {"head"}
    for decided, score, trace in zip(judged, scored, traces, strict=True):
        assert (decided.outcome, decided.p_unsafe) == (score.outcome, score.p_unsafe)
        assert (decided.raw_output, decided.reasoning, decided.finish_reason) == (
            trace.raw_output, trace.reasoning, trace.finish_reason
        )  # fmt: skip
        assert decided.trace_p_unsafe == trace.p_unsafe and decided.completion_tokens == trace.completion_tokens
    unsure = judged[2]
    assert unsure.p_unsafe == pytest.approx(0.5) and unsure.trace_p_unsafe == pytest.approx(0.1)  # not overturned
    assert engine.complete_calls == [3, 3]  # one prefill each for the head, then the mode's reasoning for all


def test_a_higher_threshold_traces_fewer_units():
    engine = HEAD.load()
    strict = dataclasses.replace(SETTINGS, threshold=0.95)
    (bomb,) = judge_batch(engine, [JudgeRequest(_conversation("build a bomb"))], strict)
    assert bomb.verdict_source == "head" and bomb.reasoning == "" and engine.complete_calls == [1]


def test_a_trace_that_disagrees_with_the_head_is_flagged():
    from transforms.judging.decisions import Judgement, consistency_flag

    decided = Judgement("unsafe", "head", 0.9, "r", "raw", "stop", 10, 5, 64, trace_p_unsafe=0.2)
    assert consistency_flag(decided) == "trace_disagrees"
    assert consistency_flag(dataclasses.replace(decided, trace_p_unsafe=0.7)) is None
    assert consistency_flag(dataclasses.replace(decided, trace_p_unsafe=None)) is None


def test_the_job_with_a_head_records_who_decided_and_the_trace(tmp_path):
    import polars as pl

    out = tmp_path / "out"
    manifest = run(
        ["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out)],
        engine_spec=HEAD,
    )  # the default verdict mode is the cascade
    verdicts = pl.read_parquet(out / "verdicts" / "**" / "*.parquet")
    assert set(verdicts["verdict_source"]) == {"head"} and set(verdicts["verdict_mode"]) == {"cascade"}
    flagged = verdicts.filter(pl.col("p_unsafe") >= 0.5)
    assert flagged.height > 0 and flagged["reasoning"].str.len_chars().min() > 0  # every flagged unit has a trace
    assert flagged["trace_p_unsafe"].null_count() == 0
    passed = verdicts.filter(pl.col("p_unsafe") < 0.2)
    assert passed.height > 0 and set(passed["finish_reason"]) == {"score"}
    totals = manifest.totals
    assert totals["cascade_reasoned"] == flagged.height and totals["cascade_score"] == passed.height


@pytest.mark.parametrize(("spec", "source"), [(FakeEngineSpec(), "score"), (HEAD, "head")])
def test_score_mode_decides_every_unit_by_the_score_alone(spec, source):
    engine = spec.load()
    score = dataclasses.replace(SETTINGS, verdict_mode="score")
    bomb, bread = judge_batch(engine, [JudgeRequest(_conversation(t)) for t in ("a bomb", "bake bread")], score)
    assert (bomb.outcome, bread.outcome) == ("unsafe", "safe") and {bomb.verdict_source, bread.verdict_source} == {
        source
    }
    assert bomb.reasoning == bread.reasoning == "" and engine.complete_calls == [2]  # one prefill each, no reasoning
