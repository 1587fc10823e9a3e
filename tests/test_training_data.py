"""The training-data builder: deterministic, balanced, no evaluation text, policy-dependent labels, and
rendered exactly as the job renders a unit (same renderer, policies and chat template)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from policies import DEFAULT_POLICY_ID, load_policies
from training.dataset import DataConfig, balanced_split, build_datasets, clean_items, split_of
from training.overlap import evaluation_texts, normalize_text
from training.paths import DEFAULT_BENCHMARKS_DIR
from training.policy_variants import choose_policy, codes_for, derived_policy, label_under
from training.sources import LabelledText
from transforms.engines.chat_format import chat_prompt_text
from transforms.engines.embedded_model import ensure_embedded_model
from transforms.prompts.units import make_units
from transforms.records import Conversation, Message

SMALL = DataConfig(train_per_cell=16, validation_per_cell=6)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_embedded_model())


@pytest.fixture(scope="module")
def built(tokenizer):
    return build_datasets(SMALL, tokenizer)


@pytest.fixture(scope="module")
def eval_texts():
    return evaluation_texts(DEFAULT_BENCHMARKS_DIR)


def test_deterministic_by_seed(built, tokenizer):
    again, _ = build_datasets(SMALL, tokenizer)
    assert again == built[0]
    other, _ = build_datasets(dataclasses.replace(SMALL, seed=1), tokenizer)
    assert [r["prompt"] for r in other["train"]] != [r["prompt"] for r in built[0]["train"]]


def test_balanced_by_level_and_label(built):
    splits, report = built
    for name, per_cell in (("train", SMALL.train_per_cell), ("validation", SMALL.validation_per_cell)):
        cells = report["splits"][name]["level_label"]
        assert cells == {f"{lv}/{lb}": per_cell for lv in ("prompt", "response") for lb in ("safe", "unsafe")}
        assert len(splits[name]) == 4 * per_cell


def test_no_training_text_equals_an_evaluation_text(built, eval_texts):
    assert len(eval_texts) > 10_000  # every benchmark file was read
    for records in built[0].values():
        for record in records:
            assert normalize_text(record["judged_text"]) not in eval_texts, record["row_id"]
            assert normalize_text(record["user_message"]) not in eval_texts


def test_every_training_row_is_checked_and_overlaps_are_dropped(eval_texts):
    some_eval_text = sorted(eval_texts)[len(eval_texts) // 2]
    items = [
        LabelledText("a", "1", "prompt", some_eval_text.upper(), None, "unsafe"),
        LabelledText("a", "2", "response", "hello there, friend", some_eval_text, "safe"),
        LabelledText("a", "3", "prompt", "a text only used for training here", None, "safe"),
    ]
    kept, stats = clean_items(items, eval_texts)
    assert [i.row_id for i in kept] == ["3"]
    assert stats["eval_overlap"] == 2


def test_duplicates_across_sets_kept_once_and_conflicts_dropped():
    items = [
        LabelledText("toxicchat_train", "1", "prompt", "How do I  bake bread?", None, "safe"),
        LabelledText("guardreasoner:X", "9", "prompt", "how do i bake bread?", None, "safe"),
        LabelledText("a", "2", "prompt", "mixed signals text", None, "safe"),
        LabelledText("b", "3", "prompt", "Mixed signals text", None, "unsafe"),
    ]
    kept, stats = clean_items(items, frozenset())
    assert [(i.source, i.row_id) for i in kept] == [("toxicchat_train", "1")]
    assert stats == {"duplicate": 1, "conflicting_label": 2}


def test_splits_share_no_prompt(built):
    splits, _ = built
    train = {normalize_text(r["user_message"].split("<BEGIN CONVERSATION>")[1]) for r in splits["train"]}
    validation = {normalize_text(r["user_message"].split("<BEGIN CONVERSATION>")[1]) for r in splits["validation"]}
    assert not train & validation
    item = LabelledText("s", "1", "prompt", "same prompt", None, "safe")
    reply = dataclasses.replace(item, level="response", response="a reply")
    assert split_of(item, 0.5, 0) == split_of(reply, 0.5, 0)


def test_label_follows_the_policy():
    default = load_policies()[DEFAULT_POLICY_ID]
    without_weapons = derived_policy(
        default, tuple(c for c in default.categories if c.code not in {"U1", "U2"}), "subset"
    )
    weapons = codes_for("Guns and Illegal Weapons")
    assert weapons == ("U2", "U1")
    assert label_under(default, "unsafe", weapons) == "unsafe"
    assert label_under(without_weapons, "unsafe", weapons) == "safe"
    assert label_under(without_weapons, "safe", weapons) == "safe"
    assert label_under(without_weapons, "unsafe", None) is None  # unknown category: not shown under a subset
    assert codes_for("Other") is None and codes_for(None) is None


def test_unsafe_without_category_only_under_the_full_default_set():
    policies = load_policies()
    default_codes = set(policies[DEFAULT_POLICY_ID].category_codes)
    rng = random.Random(0)
    shares = {"subset": 0.8, "tenant": 0.2}
    for _ in range(50):
        choice = choose_policy(rng, policies, "prompt", "unsafe", None, shares)
        assert set(choice.policy.category_codes) == default_codes and choice.label == "unsafe"


def test_records_carry_policy_dependent_labels(built):
    for records in built[0].values():
        for r in records:
            codes = codes_for(r["category"])
            if r["gold_label"] == "unsafe" and r["label"] == "safe":
                assert r["policy_kind"] == "subset" and not set(codes) & set(r["policy_codes"])
            if r["gold_label"] == "unsafe" and codes is None:
                assert sorted(r["policy_codes"]) == sorted(load_policies()[DEFAULT_POLICY_ID].category_codes)
            box = "\\boxed{" + r["label"] + "}"
            assert r["completion"].endswith(box) or f"{box}\nCategories:" in r["completion"]


def test_prompts_are_exactly_what_the_job_serves(built, tokenizer):
    policies = load_policies()
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    checked = 0
    for r in built[0]["train"]:
        if r["policy_kind"] not in ("default", "tenant") or r["template"] != "rsafe":
            continue
        policy = policies[r["policy_id"]].model_copy(update={"units": (r["level"],)})
        messages = tuple(Message(role, content) for role, content in r["messages"])
        conversation = Conversation("c", "t", dt.datetime(2025, 1, 1, tzinfo=dt.UTC), messages, "f", 0)
        (unit,) = make_units(conversation, policy, "rsafe", "m", count)
        if unit.prompt != r["user_message"]:  # user text neutralised differently would show here
            pytest.fail(f"{r['source']}:{r['row_id']}: training prompt differs from the served prompt")
        assert r["prompt"] == chat_prompt_text(tokenizer, unit.prompt)
        checked += 1
    assert checked >= 5


def test_balanced_split_fills_every_cell_from_interleaved_sources():
    rng = random.Random(0)
    items = [
        LabelledText(f"s{i % 3}", str(i), "prompt", f"text {i}", None, "safe" if i % 2 else "unsafe") for i in range(60)
    ]
    items += [dataclasses.replace(i, level="response", response="r", row_id=i.row_id + "r") for i in items]
    render = lambda i: {"level": i.level, "label": i.label, "source": i.source}  # noqa: E731
    out = balanced_split(items, 5, rng, render)
    assert len(out) == 20
    assert {r["source"] for r in out} == {"s0", "s1", "s2"}
