"""`--verdict-mode cascade`: a reasoning-free score first, full reasoning only inside the uncertainty band."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.moderate import run
from policies import PolicyError, load_policies
from transforms.engine import SamplingSettings
from transforms.fake_engine import FakeEngineSpec
from transforms.judging import JudgeRequest, JudgeSettings, judge_batch

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
    from transforms.judging import Judgement, consistency_flag

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
