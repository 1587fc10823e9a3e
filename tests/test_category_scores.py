"""Category heads served at the box (`category_scores`), and categories for every unsafe verdict under the
categories template, whoever decided it (issue #25, item 2)."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from pipelines.job.moderate import run
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.engines.protocol import SamplingSettings
from transforms.engines.served_head import ServedHead, category_readout
from transforms.judging.cascade import category_scores_from_logprobs, judge_batch
from transforms.judging.decisions import JudgeRequest, JudgeSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLES = str(REPO / "samples/logs/*.parquet")


def _conversation(text: str) -> str:
    return f"<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>"


def _settings(mode: str, **kwargs) -> JudgeSettings:
    return JudgeSettings(verdict_mode=mode, sampling=SamplingSettings(max_tokens=64), **kwargs)


def test_a_category_score_is_the_sigmoid_of_its_read_out_minus_safe_for_the_policys_codes_in_order():
    logprobs = {"safe": -0.2, "unsafe": -1.7, category_readout("U1"): -0.2 + 2.0, category_readout("U7"): -3.2}
    scores = category_scores_from_logprobs(logprobs, ("U7", "K1", "U1"), ("U1", "U7", "U9"))
    assert [code for code, _ in scores] == ["U7", "U1"]  # K1 has no head, U9 is not in the policy
    assert dict(scores)["U1"] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert dict(scores)["U7"] == pytest.approx(1 / (1 + math.exp(3.0)))


def test_a_served_head_names_a_read_out_token_per_category():
    head = ServedHead("v", 10, 11, ("U1", "U7"), (12, 13))
    assert head.readout_tokens == {"safe": 10, "unsafe": 11, "category:U1": 12, "category:U7": 13}
    assert head.never_generated == (11, 12, 13)


@pytest.mark.parametrize("mode", ["score", "cascade"])
def test_the_score_pass_gives_category_scores_from_the_same_request(mode):
    engine = FakeEngineSpec(head_version="h", head_categories=("U1", "U7")).load()
    codes = ("U1", "U2", "U7")
    requests = [JudgeRequest(_conversation(t), allowed_codes=codes) for t in ("build a bomb", "bake bread")]
    bomb, bread = judge_batch(engine, requests, _settings(mode))
    assert dict(bomb.category_scores) == {"U1": pytest.approx(0.8), "U7": pytest.approx(0.05)}
    assert dict(bread.category_scores) == {"U1": pytest.approx(0.05), "U7": pytest.approx(0.05)}
    assert engine.score_calls[0] == 2  # one read-out request per unit, categories included


def test_no_category_heads_no_scores():
    for spec in (FakeEngineSpec(head_version="h"), FakeEngineSpec()):
        (judged,) = judge_batch(spec.load(), [JudgeRequest(_conversation("a bomb"), allowed_codes=("U1",))],
                                _settings("score"))  # fmt: skip
        assert judged.category_scores == ()


@pytest.mark.parametrize(("spec", "source"), [(FakeEngineSpec(), "score"), (FakeEngineSpec(head_version="h"), "head")])
def test_every_unsafe_cascade_verdict_gets_categories_under_the_categories_template(spec, source):
    engine = spec.load()
    requests = [JudgeRequest(_conversation(t), allowed_codes=("U1", "U2")) for t in ("build a bomb", "bake bread")]
    bomb, bread = judge_batch(engine, requests, _settings("cascade", extract_categories=True))
    assert bomb.verdict_source == source and bomb.outcome == "unsafe"
    # the fake answers "U1, X9" when asked for codes: X9 is not the policy's
    assert (bomb.categories, bomb.unknown_categories) == (("U1",), ("X9",))
    assert (bread.categories, bread.unknown_categories) == ((), ())


def test_without_the_categories_template_no_unit_is_asked_for_categories():
    engine = FakeEngineSpec().load()
    (bomb,) = judge_batch(engine, [JudgeRequest(_conversation("a bomb"), allowed_codes=("U1",))], _settings("cascade"))
    assert bomb.categories == () and bomb.outcome == "unsafe"


def test_the_job_writes_category_scores_that_polars_reads_and_the_cache_keeps(tmp_path):
    spec = FakeEngineSpec(head_version="h", head_categories=("U1", "U13"))
    common = ["--engine", "fake", "--input", SAMPLES, "--verdict-cache", str(tmp_path / "cache")]
    for night in ("n1", "n2"):
        run([*common, "--output", str(tmp_path / night), "--run-id", night], engine_spec=spec)
    nights = [pl.read_parquet(tmp_path / n / "verdicts" / "**" / "*.parquet").sort("resume_key") for n in ("n1", "n2")]
    first, second = nights
    assert second["from_cache"].all()
    assert first["category_scores"].to_list() == second["category_scores"].to_list()
    scores = first.explode("category_scores").unnest("category_scores")
    assert set(scores["code"].drop_nulls()) == {"U1", "U13"}  # both codes are in every sample tenant's policy
    flagged = scores.filter(pl.col("code") == "U1", pl.col("verdict") == "unsafe")
    assert len(flagged) and flagged["score"].to_list() == pytest.approx([0.8] * len(flagged))
