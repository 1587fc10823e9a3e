"""The OpenAI-Moderation-compatible view of the verdicts (`pipelines.audit.export`)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from openai.types import ModerationCreateResponse

from pipelines.audit.export import code_mappings, main, mapping_versions, to_openai_moderation
from pipelines.job.moderate import run
from policies.model import MODERATION_API_CATEGORIES
from transforms.engines.fake_engine import FakeEngineSpec

REPO = Path(__file__).resolve().parents[1]
SAMPLES = str(REPO / "samples/logs/*.parquet")


def _rows(**overrides) -> dict:
    row = {
        "resume_key": "k", "model": "m", "conversation_id": "c", "tenant_id": "t", "unit": "prompt",
        "turn_index": 0, "verdict": "unsafe", "outcome": "unsafe", "policy_id": "rsafe-default",
        "policy_version": "v", "run_id": "r", "processed_at": "2026-11-27T00:00:00", "p_unsafe": 0.9,
        "categories": ["U6", "U10"],
    }  # fmt: skip
    return {**row, **overrides}


def test_flagged_rows_name_the_mapped_categories_and_only_those():
    frame = pl.DataFrame(
        [
            _rows(),
            _rows(resume_key="k2", verdict="safe", outcome="safe", p_unsafe=0.1, categories=[]),
            _rows(resume_key="k3", verdict="review", p_unsafe=0.5, categories=["U1"]),
            _rows(resume_key="k4", categories=[]),  # unsafe, no code named: flagged, no category
        ]
    ).lazy()
    out = to_openai_moderation(frame, code_mappings()).collect().to_dicts()
    assert [r["id"] for r in out] == ["modr-k", "modr-k2", "modr-k3", "modr-k4"]
    assert [r["resume_key"] for r in out] == ["k", "k2", "k3", "k4"]
    first = out[0]["results"][0]
    assert first["flagged"] is True and set(first["categories"]) == set(MODERATION_API_CATEGORIES)
    assert {n for n, on in first["categories"].items() if on} == {"sexual/minors", "sexual"}  # U10: no equivalent
    # no category head measured anything: a flagged category scores P(unsafe), every other one 0.0
    assert set(first["category_scores"]) == set(MODERATION_API_CATEGORIES) and out[0]["p_unsafe"] == 0.9
    assert {k: v for k, v in first["category_scores"].items() if v} == {"sexual/minors": 0.9, "sexual": 0.9}
    assert out[0]["scored_categories"] == []
    assert first["category_applied_input_types"] == {name: ["text"] for name in MODERATION_API_CATEGORIES}
    assert not any(out[3]["results"][0]["category_scores"].values())  # flagged, no category: nothing to score
    assert out[1]["results"][0]["flagged"] is False and not any(out[1]["results"][0]["categories"].values())
    assert out[2]["results"][0]["flagged"] is False  # review is not flagged by default
    assert out[3]["results"][0]["flagged"] is True and not any(out[3]["results"][0]["categories"].values())
    with_review = to_openai_moderation(frame, code_mappings(), include_review=True).collect().to_dicts()
    assert with_review[2]["results"][0]["categories"]["violence"] is True
    assert {k for k in out[0] if k != "results"} >= {"conversation_id", "tenant_id", "policy_version", "run_id"}


def test_category_head_scores_become_the_api_categories_scores_and_flags():
    scores = [{"code": "U2", "score": 0.7}, {"code": "U3", "score": 0.2}, {"code": "U4", "score": 0.1},
              {"code": "U13", "score": 0.9}]  # fmt: skip
    frame = pl.DataFrame(
        [
            _rows(categories=[], category_scores=scores),
            _rows(resume_key="k2", verdict="safe", outcome="safe", p_unsafe=0.2, categories=[], category_scores=scores),
            _rows(
                resume_key="k3",
                policy_id="medical-advice",
                categories=[],
                category_scores=[{"code": "U13", "score": 0.9}],
            ),
        ]
    ).lazy()
    records = to_openai_moderation(frame, code_mappings()).collect().to_dicts()
    flagged, safe, medical = (r["results"][0] for r in records)
    assert records[0]["scored_categories"] == ["illicit", "illicit/violent"] and records[2]["scored_categories"] == []
    # U3 and U4 both map onto `illicit`: the higher score; U13 maps onto no API category
    assert {k: v for k, v in flagged["category_scores"].items() if v} == {"illicit/violent": 0.7, "illicit": 0.2}
    assert {n for n, on in flagged["categories"].items() if on} == {"illicit/violent"}  # scored >= 0.5
    assert safe["category_scores"]["illicit/violent"] == 0.7 and not any(safe["categories"].values())
    # medical-advice replaces U13: its default head's score is not mapped anywhere
    assert not any(medical["categories"].values())


def test_a_tenant_policy_that_replaces_a_code_loses_its_inherited_mapping():
    mappings = code_mappings()
    assert mappings["rsafe-default"]["U1"] == ["violence"]
    assert "U13" not in mappings["medical-advice"]  # replaced in medical-advice: its meaning changed
    versions = mapping_versions(mappings)
    assert versions["medical-advice"] != versions["rsafe-default"]  # each table has its own version
    assert mapping_versions({"p": {"U1": ["violence"]}}) == mapping_versions({"p": {"U1": ["violence"]}})


def test_a_flagged_category_without_any_p_scores_one():
    frame = pl.DataFrame([_rows(p_unsafe=None, categories=["U1"])], schema_overrides={"p_unsafe": pl.Float64}).lazy()
    (record,) = to_openai_moderation(frame, code_mappings()).collect().to_dicts()
    assert record["results"][0]["category_scores"]["violence"] == 1.0
    ModerationCreateResponse.model_validate(record)


@pytest.fixture(scope="module")
def night_with_heads(tmp_path_factory) -> Path:
    """A fake-engine night whose decision head has category heads for U1 and U7 (scores on every unit)."""
    out = tmp_path_factory.mktemp("heads") / "out"
    run(["--input", SAMPLES, "--output", str(out)],
        engine_spec=FakeEngineSpec(head_version="h", head_categories=("U1", "U7")))  # fmt: skip
    return out


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_every_record_validates_with_the_openai_sdk(night_with_heads, tmp_path, suffix):
    """The SDK's own `ModerationCreateResponse` is the oracle: every record of a night validates, from a file."""
    target = tmp_path / f"moderation{suffix}"
    assert main([str(night_with_heads), "--format", "openai-moderation", "--to", str(target)]) == 0
    if suffix == ".jsonl":
        records = [json.loads(line) for line in target.read_text().splitlines()]
    else:
        records = pl.read_parquet(target).to_dicts()
    parsed = [ModerationCreateResponse.model_validate(r) for r in records]
    assert len(parsed) == 75 and all(p.id.startswith("modr-") for p in parsed)
    flagged = [p for p in parsed if p.results[0].flagged]
    assert flagged and all(p.results[0].categories.violence for p in flagged)  # U1's head scores 0.8 → violence
    assert {p.results[0].category_scores.violence for p in flagged} == {0.8}  # measured, not P(unsafe)
    assert all(r["scored_categories"] == ["hate", "violence"] for r in records if r["policy_id"] != "medical-advice")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_cli_exports_every_verdict_of_a_run(tmp_path, suffix):
    out = tmp_path / "out"
    manifest = run(["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out)])
    target = tmp_path / f"moderation{suffix}"
    assert main([str(out), "--format", "openai-moderation", "--to", str(target), "--tenant", "acme-kids"]) == 0
    if suffix == ".jsonl":
        records = [json.loads(line) for line in target.read_text().splitlines()]
    else:
        records = pl.read_parquet(target).to_dicts()
    kids = manifest.per_tenant["acme-kids"]["verdicts_written"]
    assert len(records) == kids > 0 and {r["tenant_id"] for r in records} == {"acme-kids"}
    flagged = sum(r["results"][0]["flagged"] for r in records)
    assert flagged == manifest.per_tenant["acme-kids"].get("verdict_unsafe", 0)


def test_cli_refuses_a_folder_without_verdicts(tmp_path, capsys):
    assert main([str(tmp_path), "--format", "openai-moderation", "--to", str(tmp_path / "x.jsonl")]) == 3
    assert "no verdict files under verdicts/" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["m.csv", "m.json", "m"])
def test_a_target_whose_suffix_is_not_a_format_is_refused(night_with_heads, tmp_path, capsys, name):
    target = tmp_path / name
    assert main([str(night_with_heads), "--format", "openai-moderation", "--to", str(target)]) == 2
    assert "the format follows the suffix; use .jsonl, .parquet or - (stdout)" in capsys.readouterr().err
    assert not target.exists()


def test_an_unknown_tenant_is_refused_naming_the_known_ones(night_with_heads, tmp_path, capsys):
    argv = [str(night_with_heads), "--format", "openai-moderation", "--to", str(tmp_path / "m.jsonl")]
    assert main([*argv, "--tenant", "acme-kidz"]) == 2
    err = capsys.readouterr().err
    assert "--tenant acme-kidz: no verdicts for it" in err and "acme-kids, globex" in err
    assert main([*argv, "--tenant", "acme-kids", "--since", "2030-01-01"]) == 0  # known tenant, empty range: a hint
    assert "note: no verdicts matched (--tenant acme-kids, --since 2030-01-01)" in capsys.readouterr().err
