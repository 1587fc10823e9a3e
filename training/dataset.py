"""Train/validation sets for the guard, rendered by the job's own renderer, policies and chat template.

`build_datasets` reads the training sets, drops rows that equal any evaluation text (and the sets' own exclude
lists), de-duplicates across sets (a text labelled both ways is dropped), splits by a hash of the text (so no text
is in both splits), draws a policy per example (`training.policy_variants`, the label follows the policy), and
balances each split by level and final label. Deterministic for a seed. Each record carries the served prompt
(chat-templated), the stage-1 target, the gold label under its policy, and where it came from.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policies import load_policies
from training.overlap import evaluation_texts, normalize_text, overlapping
from training.packed_data import packed_split
from training.paths import DEFAULT_BENCHMARKS_DIR, DEFAULT_TRAIN_DIR
from training.policy_variants import PolicyChoice, choose_policy, codes_for
from training.rationales import target
from training.sources import LABELS, LEVELS, LabelledText, read_sources
from transforms.engines.chat_format import chat_prompt_text
from transforms.engines.special_tokens import special_token_strings
from transforms.prompts.render import fit_conversation, render_from_lines
from transforms.records import Message


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What `python -m training data` builds."""

    seed: int = 0
    train_per_cell: int = 300  # examples per (level, final label) in the training split
    validation_per_cell: int = 50
    validation_share: float = 0.15  # of the de-duplicated texts, by hash
    max_conversation_tokens: int = 256  # judged turns longer than this are left out (training cost)
    policy_shares: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"default": 0.15, "shuffled": 0.1, "subset": 0.65, "tenant": 0.1}
    )
    categories_template_share: float = 0.1  # of unsafe examples with a mapped category (of packs, if packed)
    pack_size: int = 1  # > 1: the train split in packs of examples sharing one policy (`training.packed_data`)
    train_dir: str = str(DEFAULT_TRAIN_DIR)
    benchmarks_dir: str = str(DEFAULT_BENCHMARKS_DIR)


def _key(item: LabelledText) -> tuple[str, str, str]:
    return item.level, normalize_text(item.prompt), normalize_text(item.response or "")


def clean_items(items: Sequence[LabelledText], eval_texts: frozenset[str]) -> tuple[list[LabelledText], dict]:
    """Drop evaluation overlaps, empty texts and cross-set duplicates (conflicting labels drop every copy)."""
    stats: collections.Counter = collections.Counter()
    by_key: dict[tuple, list[LabelledText]] = {}
    for item in items:
        texts = [item.prompt] + ([item.response] if item.response is not None else [])
        if any(not t.strip() for t in texts):
            stats["empty"] += 1
            continue
        if overlapping(texts, eval_texts):
            stats["eval_overlap"] += 1
            continue
        by_key.setdefault(_key(item), []).append(item)
    kept = []
    for copies in by_key.values():
        if len({c.label for c in copies}) > 1:
            stats["conflicting_label"] += len(copies)
            continue
        stats["duplicate"] += len(copies) - 1
        kept.append(copies[0])
    return kept, dict(stats)


def split_of(item: LabelledText, validation_share: float, seed: int) -> str:
    """`validation` or `train`, from a hash of the user prompt (every level of one prompt lands together)."""
    digest = hashlib.sha256(f"{seed}\x1f{normalize_text(item.prompt)}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < validation_share else "train"


def _messages(item: LabelledText) -> list[Message]:
    messages = [Message("user", item.prompt)]
    if item.level == "response":
        messages.append(Message("assistant", item.response or ""))
    return messages


def render_example(
    item: LabelledText,
    rng: random.Random,
    policies: dict,
    config: DataConfig,
    tokenizer: Any,
    count_tokens: Callable[[str], int],
) -> dict:
    """One record: the served prompt under a drawn policy, the target, the label under that policy."""
    codes = codes_for(item.category)
    choice = choose_policy(rng, policies, item.level, item.label, codes, config.policy_shares)
    violated = _violated(codes, choice.policy, choice.label)
    template = "rsafe-categories" if violated and rng.random() < config.categories_template_share else "rsafe"
    return render_under(item, choice, template, tokenizer, count_tokens)


def _violated(codes: tuple[str, ...] | None, policy, label: str) -> tuple[str, ...]:
    return tuple(c for c in (codes or ()) if c in policy.category_codes) if label == "unsafe" else ()


def render_under(
    item: LabelledText, choice: PolicyChoice, template: str, tokenizer: Any, count_tokens: Callable[[str], int]
) -> dict:
    """The record of `item` shown under `choice` (its policy, kind and the item's label there) with `template`."""
    policy = choice.policy
    violated = _violated(codes_for(item.category), policy, choice.label) if template == "rsafe-categories" else ()
    special = special_token_strings(tokenizer)  # as the job breaks them (transforms.prompts.units.MakeUnitsDoFn)
    fitted = fit_conversation(_messages(item), item.level, policy.context_budget_tokens, count_tokens, special)
    user_message = render_from_lines(policy, fitted.lines, item.level, template)
    judged = item.response if item.level == "response" else item.prompt
    return {
        "prompt": chat_prompt_text(tokenizer, user_message),
        "user_message": user_message,
        "completion": target(item.level, judged or "", policy.category_codes, choice.label, violated),
        "label": choice.label,
        "gold_label": item.label,
        "level": item.level,
        "source": item.source,
        "row_id": item.row_id,
        "category": item.category,
        "policy_id": policy.id,
        "policy_kind": choice.kind,
        "policy_codes": list(policy.category_codes),
        "template": template,
        "judged_text": judged,
        "messages": [[m.role, m.content] for m in _messages(item)],
    }


def conversation_tokens(item: LabelledText, count_tokens: Callable[[str], int]) -> int:
    return count_tokens(item.prompt) + (count_tokens(item.response) if item.response else 0)


def _interleave_sources(items: list[LabelledText], rng: random.Random) -> list[LabelledText]:
    """Shuffled, then round-robin across sources, so a small set is not crowded out by a large one."""
    by_source: dict[str, list[LabelledText]] = collections.defaultdict(list)
    for item in items:
        by_source[item.source.split(":")[0]].append(item)
    queues = [rng.sample(v, len(v)) for _, v in sorted(by_source.items())]
    out = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop())
    return out


def balanced_split(
    items: list[LabelledText],
    per_cell: int,
    rng: random.Random,
    render: Callable[[LabelledText], dict],
) -> list[dict]:
    """Render items in source-interleaved order until every (level, final label) cell holds `per_cell`."""
    cells: dict[tuple[str, str], list[dict]] = {(lv, lb): [] for lv in LEVELS for lb in LABELS}
    for item in _interleave_sources(items, rng):
        if all(len(v) >= per_cell for v in cells.values()):
            break
        record = render(item)
        cell = cells[(record["level"], record["label"])]
        if len(cell) < per_cell:
            cell.append(record)
    records = [r for cell in cells.values() for r in cell]
    return rng.sample(records, len(records))


def usable_items(
    train_dir: str, benchmarks_dir: str, count_tokens: Callable[[str], int], max_conversation_tokens: int
) -> tuple[list[LabelledText], dict]:
    """Every row of the train splits that may be trained on: read, cleaned (`clean_items`: benchmark overlaps,
    duplicates, conflicting labels) and cut to conversations of at most `max_conversation_tokens`; returns
    (items, provenance: rows read, rows dropped by reason, benchmark texts checked) for the data report."""
    eval_texts = evaluation_texts(Path(benchmarks_dir))
    raw = list(read_sources(Path(train_dir)))
    items, stats = clean_items(raw, eval_texts)
    short = [i for i in items if conversation_tokens(i, count_tokens) <= max_conversation_tokens]
    stats["too_long"] = len(items) - len(short)
    return short, {"rows_read": len(raw), "dropped": stats, "eval_texts_checked": len(eval_texts)}


def build_datasets(config: DataConfig, tokenizer: Any) -> tuple[dict[str, list[dict]], dict]:
    """(split → records, report): the training and validation sets and how they were made."""
    rng = random.Random(config.seed)
    count_tokens = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    short, provenance = usable_items(
        config.train_dir, config.benchmarks_dir, count_tokens, config.max_conversation_tokens
    )
    policies = load_policies()
    splits: dict[str, list[dict]] = {}
    for split, per_cell in (("train", config.train_per_cell), ("validation", config.validation_per_cell)):
        pool = [i for i in short if split_of(i, config.validation_share, config.seed) == split]
        if split == "train" and config.pack_size > 1:
            render_in = lambda item, choice, template: render_under(  # noqa: E731
                item, choice, template, tokenizer, count_tokens
            )
            splits[split] = packed_split(
                pool, per_cell, config.pack_size, rng, policies, config, _interleave_sources, render_in
            )
            continue
        render = lambda item: render_example(item, rng, policies, config, tokenizer, count_tokens)  # noqa: E731
        splits[split] = balanced_split(pool, per_cell, rng, render)
    report = {
        "config": dataclasses.asdict(config),
        **provenance,
        "splits": {name: summarize(records) for name, records in splits.items()},
    }
    return splits, report


def summarize(records: Sequence[dict]) -> dict:
    """Counts by level × label, source, policy kind and template."""
    count = lambda field: dict(sorted(collections.Counter(str(r[field]) for r in records).items()))  # noqa: E731
    cells = collections.Counter(f"{r['level']}/{r['label']}" for r in records)
    return {
        "examples": len(records),
        "level_label": dict(sorted(cells.items())),
        "source": count("source"),
        "policy_kind": count("policy_kind"),
        "template": count("template"),
        "label_flipped_by_policy": sum(r["label"] != r["gold_label"] for r in records),
    }


def write_datasets(splits: dict[str, list[dict]], report: dict, out_dir: Path) -> None:
    """`<split>.jsonl` per split and `report.json`, written atomically."""
    for name, records in splits.items():
        write_split(out_dir, name, records)
    atomic_write(out_dir / "report.json", json.dumps(report, indent=2) + "\n")


def write_split(out_dir: Path, split: str, records: Sequence[dict]) -> None:
    """One split as `<split>.jsonl`, written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_split(data_dir: Path, split: str) -> list[dict]:
    """The records of one split written by `write_datasets`."""
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build it first: python -m training data --out {data_dir}")
    return read_jsonl(path)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file written with `ensure_ascii=False` (split on `\\n` only: `splitlines`
    would also break a record at a U+2028 inside its text)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a sibling temporary file, so a reader never sees a partial file."""
    staging = path.with_suffix(path.suffix + ".tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
