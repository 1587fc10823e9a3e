"""Records for the decision head: every usable training row, rendered by the job's renderer under a drawn policy.

Unlike the stage-1 sets (`training.dataset`, balanced and capped per cell because every example costs a backward
pass), the head's features cost one forward pass, so all rows are used: both levels, every source, after the same
cleaning (evaluation overlaps, the sets' own exclude lists, cross-set duplicates and conflicting labels dropped)
and the same train/validation split by a hash of the user prompt. Each row is shown under a policy drawn as the
stage-1 builder draws them (default, shuffled, 2-8-category subsets with the label following the policy, tenant
policies), but shuffled and subset policies come from a fixed pool (`training.policy_variants.policy_pool`), so
rows share their policy prefix and a prefix-cached engine computes it once per policy. A share of the unsafe rows
whose category is known is shown a second time under a pool subset without that category, labelled `safe` there
(a contrast pair: same text, the policy decides).
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policies import DEFAULT_POLICY_ID, load_policies
from training.dataset import read_jsonl, render_under, split_of, summarize, usable_items
from training.paths import DEFAULT_BENCHMARKS_DIR, DEFAULT_TRAIN_DIR
from training.policy_variants import PolicyChoice, PolicyPool, choose_policy, codes_for, policy_pool
from training.sources import LabelledText

RECORDS_FILE = "records.jsonl"


@dataclasses.dataclass(frozen=True)
class HeadDataConfig:
    """What `python -m training head` renders before extracting features."""

    seed: int = 0
    validation_share: float = 0.15  # of the de-duplicated texts, by hash (the stage-1 rule)
    max_conversation_tokens: int = 512  # longer conversations are left out (extraction cost)
    policy_shares: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"default": 0.4, "shuffled": 0.15, "subset": 0.3, "tenant": 0.15}
    )
    shuffled_policies: int = 4  # pool sizes
    subset_policies: int = 40
    contrast_share: float = 0.15  # of unsafe rows with a known category: also shown under a policy without it
    max_rows: int | None = None  # a budget: keep this many rows (stratified by split, level and label)
    train_dir: str = str(DEFAULT_TRAIN_DIR)
    benchmarks_dir: str = str(DEFAULT_BENCHMARKS_DIR)


def contrast_choice(rng: random.Random, pool: PolicyPool, codes: tuple[str, ...] | None) -> PolicyChoice | None:
    """A pool subset holding none of `codes`, under which an unsafe example of that category is `safe`."""
    if not codes:
        return None
    candidates = [p for p in pool.subsets if not set(codes) & set(p.category_codes)]
    return PolicyChoice(rng.choice(candidates), "contrast", "safe") if candidates else None


def _record(item: LabelledText, choice: PolicyChoice, split: str, render: Callable[..., dict]) -> dict:
    record = render(item, choice, "rsafe")
    record.pop("prompt")  # the extractor tokenises `user_message` with the serving tokenizer
    codes = codes_for(item.category)
    return {**record, "split": split, "codes": list(codes or ())}


def _stratified(records: list[dict], limit: int, rng: random.Random) -> list[dict]:
    """`limit` records drawn in proportion from each (split, level, label) stratum."""
    strata: dict[tuple, list[dict]] = collections.defaultdict(list)
    for record in records:
        strata[(record["split"], record["level"], record["label"])].append(record)
    kept = []
    for members in strata.values():
        kept += rng.sample(members, min(len(members), round(limit * len(members) / len(records))))
    return kept


def build_head_records(config: HeadDataConfig, tokenizer: Any) -> tuple[list[dict], dict]:
    """(records, report): every usable row under a drawn policy, plus the contrast rows; deterministic per seed."""
    rng = random.Random(config.seed)
    count_tokens = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    short, provenance = usable_items(
        config.train_dir, config.benchmarks_dir, count_tokens, config.max_conversation_tokens
    )
    policies = load_policies()
    pool = policy_pool(rng, policies[DEFAULT_POLICY_ID], config.shuffled_policies, config.subset_policies)
    render = lambda item, choice, template: render_under(  # noqa: E731
        item, choice, template, tokenizer, count_tokens
    )
    records = []
    for item in short:
        split = split_of(item, config.validation_share, config.seed)
        codes = codes_for(item.category)
        choice = choose_policy(rng, policies, item.level, item.label, codes, config.policy_shares, pool)
        records.append(_record(item, choice, split, render))
        if item.label == "unsafe" and rng.random() < config.contrast_share:
            contrast = contrast_choice(rng, pool, codes)
            if contrast is not None:
                records.append(_record(item, contrast, split, render))
    if config.max_rows is not None and config.max_rows < len(records):
        records = _stratified(records, config.max_rows, rng)
    records.sort(key=lambda r: (r["split"], r["policy_id"], r["level"]))  # one policy prefix after another
    report = {
        "config": dataclasses.asdict(config),
        **provenance,
        "policies": {"pooled_shuffled": len(pool.shuffled), "pooled_subsets": len(pool.subsets)},
        "splits": {s: summarize([r for r in records if r["split"] == s]) for s in ("train", "validation")},
    }
    return records, report


def read_records(run_dir: Path) -> list[dict]:
    """The records of a head run (`RUN/records.jsonl`), in extraction order."""
    return read_jsonl(Path(run_dir) / RECORDS_FILE)
