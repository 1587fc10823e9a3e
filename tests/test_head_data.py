"""The decision head's records: every usable row, no evaluation text, labels that follow the drawn policy, contrast
pairs, and prompts rendered by the job's renderer."""

from __future__ import annotations

import collections

import pytest

from training.head_data import HeadDataConfig, build_head_records
from training.overlap import evaluation_texts, normalize_text
from training.paths import DEFAULT_BENCHMARKS_DIR
from transforms.engines.embedded_model import ensure_embedded_model


@pytest.fixture(scope="module")
def built():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())
    return build_head_records(HeadDataConfig(max_rows=600), tokenizer)


def test_no_head_record_is_an_evaluation_text(built):
    records, report = built
    eval_texts = evaluation_texts(DEFAULT_BENCHMARKS_DIR)
    assert report["eval_texts_checked"] == len(eval_texts) > 10_000  # every benchmark file was read
    for record in records:
        assert normalize_text(record["judged_text"]) not in eval_texts, record["row_id"]
        for _, content in record["messages"]:
            assert normalize_text(content) not in eval_texts, record["row_id"]


def test_all_rows_are_read_and_kept_within_the_budget(built):
    records, report = built
    assert report["rows_read"] > 15_000 and abs(len(records) - 600) <= 12  # stratified rounding
    kinds = collections.Counter(r["policy_kind"] for r in records)
    assert {"default", "shuffled", "subset", "tenant", "contrast"} <= kinds.keys()
    assert {r["level"] for r in records} == {"prompt", "response"}
    assert {r["split"] for r in records} == {"train", "validation"}


def test_labels_follow_the_policy_and_contrast_rows_are_safe_without_their_category(built):
    records, _ = built
    for record in records:
        if record["policy_kind"] == "contrast":
            assert record["gold_label"] == "unsafe" and record["label"] == "safe"
            assert not set(record["codes"]) & set(record["policy_codes"])
        if record["gold_label"] == "safe":
            assert record["label"] == "safe"
    # rows come grouped by policy within a split, so a prefix-cached engine computes each policy once
    keys = [(r["split"], r["policy_id"], r["level"]) for r in records]
    assert keys == sorted(keys)
