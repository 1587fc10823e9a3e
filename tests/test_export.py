"""The OpenAI-Moderation-compatible view of the verdicts (`pipelines.export`)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.export import code_mappings, main, to_openai_moderation
from pipelines.moderate import run
from policies.model import MODERATION_API_CATEGORIES

REPO = Path(__file__).resolve().parents[1]


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
    assert [r["id"] for r in out] == ["k", "k2", "k3", "k4"]
    first = out[0]["results"][0]
    assert first["flagged"] is True and set(first["categories"]) == set(MODERATION_API_CATEGORIES)
    assert {n for n, on in first["categories"].items() if on} == {"sexual/minors", "sexual"}  # U10: no equivalent
    # P(unsafe), and no per-category score where no category head measured one (null, not invented)
    assert first["category_scores"]["unsafe"] == 0.9
    assert set(first["category_scores"]) == {"unsafe", *MODERATION_API_CATEGORIES}
    assert not any(v is not None for k, v in first["category_scores"].items() if k != "unsafe")
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
    flagged, safe, medical = (
        r["results"][0] for r in to_openai_moderation(frame, code_mappings()).collect().to_dicts()
    )
    # U3 and U4 both map onto `illicit`: the higher score; U13 maps onto no API category
    assert {k: v for k, v in flagged["category_scores"].items() if v is not None} == {
        "unsafe": 0.9, "illicit/violent": 0.7, "illicit": 0.2,
    }  # fmt: skip
    assert {n for n, on in flagged["categories"].items() if on} == {"illicit/violent"}  # scored >= 0.5
    assert safe["category_scores"]["illicit/violent"] == 0.7 and not any(safe["categories"].values())
    # medical-advice replaces U13: its default head's score is not mapped anywhere
    assert not any(medical["categories"].values())


def test_a_tenant_policy_that_replaces_a_code_loses_its_inherited_mapping():
    mappings = code_mappings()
    assert mappings["rsafe-default"]["U1"] == ["violence"]
    assert "U13" not in mappings["medical-advice"]  # replaced in medical-advice: its meaning changed


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


def test_cli_refuses_a_folder_without_verdicts(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--format", "openai-moderation", "--to", str(tmp_path / "x.jsonl")])
