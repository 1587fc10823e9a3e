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
    assert first["category_scores"] == {"unsafe": 0.9}  # P(unsafe) only: no invented per-category score
    assert out[1]["results"][0]["flagged"] is False and not any(out[1]["results"][0]["categories"].values())
    assert out[2]["results"][0]["flagged"] is False  # review is not flagged by default
    assert out[3]["results"][0]["flagged"] is True and not any(out[3]["results"][0]["categories"].values())
    with_review = to_openai_moderation(frame, code_mappings(), include_review=True).collect().to_dicts()
    assert with_review[2]["results"][0]["categories"]["violence"] is True
    assert {k for k in out[0] if k != "results"} >= {"conversation_id", "tenant_id", "policy_version", "run_id"}


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
