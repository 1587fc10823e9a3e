"""Public safety benchmarks → the job's canonical conversation-log rows, plus a gold-label side table.

Each set in `SETS` has a loader (its file format and label direction), a level and a source path under the
benchmarks folder (`<repo>/../shared/data/benchmarks` by default; nothing is copied into the repo).
Prompt-level items become one user turn under tenant `eval-prompt`; response-level items a user turn and
the assistant reply under tenant `eval-response`, to be judged on the response unit. Gold labels are
`unsafe`/`safe`. Conversation ids are `<set>-<index>`, the index being the item's position in the source.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BENCHMARKS_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"
TENANTS = {"prompt": "eval-prompt", "response": "eval-response"}
CREATED_AT = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
LABELS = ("unsafe", "safe")


@dataclasses.dataclass(frozen=True)
class Item:
    """One labelled benchmark item; `response` is None for prompt-level items."""

    index: int
    prompt: str
    response: str | None
    label: str  # unsafe | safe


Loader = Callable[[Path], list[Item]]


@dataclasses.dataclass(frozen=True)
class BenchmarkSet:
    """A registered benchmark: how to read it, at which level it is judged, what its labels mean."""

    name: str
    level: str  # prompt | response
    loader: Loader
    source: str  # path under the benchmarks folder
    labels: str  # label direction, in words


# ---- GuardReasoner bundle: {"instruction", "input": "Human user:\n<p>\n\nAI assistant:\n<r>\n\n", "output"} ----

_GR_HEAD, _GR_SPLIT = "Human user:\n", "\n\nAI assistant:\n"
_GR_LABELS = {"harmful": "unsafe", "unharmful": "safe"}


def _split_guardreasoner_input(text: str) -> tuple[str, str | None]:
    if not text.startswith(_GR_HEAD) or text.count(_GR_SPLIT) != 1:
        raise ValueError(f"unexpected GuardReasoner input layout: {text[:80]!r}")
    prompt, response = text[len(_GR_HEAD) :].split(_GR_SPLIT)
    response = response.removesuffix("\n\n")
    return prompt, (None if response == "None" else response)


def _guardreasoner_label(output: str) -> str:
    """`harmful`/`unharmful`, or SafeRLHF/BeaverTails' `...Response: harmful|unharmful` (only Response is set)."""
    word = output.strip()
    if "Response:" in word:
        word = word.rsplit("Response:", 1)[1].strip()
    if word not in _GR_LABELS:
        raise ValueError(f"unknown GuardReasoner label {output!r}")
    return _GR_LABELS[word]


def guardreasoner(file_name: str, level: str) -> Loader:
    """Loader of one `guardreasoner_eval/` JSON file: harmful → unsafe, unharmful → safe."""

    def load(root: Path) -> list[Item]:
        items = []
        records = json.loads((root / "guardreasoner_eval" / file_name).read_text(encoding="utf-8"))
        for index, record in enumerate(records):
            prompt, response = _split_guardreasoner_input(record["input"])
            if (response is None) != (level == "prompt"):
                raise ValueError(f"{file_name}[{index}]: a {level}-level item with response {response!r:.40}")
            items.append(Item(index, prompt, response, _guardreasoner_label(record["output"])))
        return items

    return load


# ---- Original files -------------------------------------------------------------------------------


def _csv(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    with path.open(newline="", encoding=encoding) as handle:
        return list(csv.DictReader(handle))


def load_xstest_prompts(root: Path) -> list[Item]:
    """xstest/xstest_prompts.csv: `label` is `safe`/`unsafe` as written (unsafe = the contrast_* prompts)."""
    rows = _csv(root / "xstest" / "xstest_prompts.csv")
    items = []
    for index, row in enumerate(rows):
        if row["label"] not in LABELS:
            raise ValueError(f"xstest_prompts.csv row {index}: unknown label {row['label']!r}")
        items.append(Item(index, row["prompt"], None, row["label"]))
    return items


def load_jailbreakbench_prompts(root: Path) -> list[Item]:
    """JBB-Behaviors `Goal`: harmful-behaviors.csv → unsafe (indexes 0-99), benign-behaviors.csv → safe (100-199)."""
    harmful = _csv(root / "jailbreakbench" / "harmful-behaviors.csv")
    benign = _csv(root / "jailbreakbench" / "benign-behaviors.csv")
    labelled = [(row["Goal"], "unsafe") for row in harmful] + [(row["Goal"], "safe") for row in benign]
    return [Item(index, goal, None, label) for index, (goal, label) in enumerate(labelled)]


def load_jailbreakbench_responses(root: Path) -> list[Item]:
    """judge-comparison.csv (Mac Roman): jailbreak `prompt` + `target_response`; human_majority 1 → unsafe."""
    rows = _csv(root / "jailbreakbench" / "judge-comparison.csv", encoding="mac_roman")
    items = []
    for index, row in enumerate(rows):
        if row["human_majority"] not in ("0", "1"):
            raise ValueError(f"judge-comparison.csv row {index}: unknown label {row['human_majority']!r}")
        label = "unsafe" if row["human_majority"] == "1" else "safe"
        items.append(Item(index, row["prompt"], row["target_response"], label))
    return items


_GR = "guardreasoner_eval/"


def _gr_set(name: str, level: str, file_name: str, note: str = "") -> BenchmarkSet:
    labels = "output harmful → unsafe, unharmful → safe" + note
    return BenchmarkSet(name, level, guardreasoner(file_name, level), _GR + file_name, labels)


_RLHF = " (`Answers: ... Response: <label>`; only the response is labelled)"
SETS: dict[str, BenchmarkSet] = {
    s.name: s
    for s in (
        _gr_set("simplesafetytests", "prompt", "0_0_SimpleSafetyTests.json", " (all unsafe)"),
        _gr_set("aegis", "prompt", "0_1_AegisSafetyTest.json"),
        _gr_set("openai_moderation", "prompt", "0_2_OpenAIModeration.json", " (harmful = any of 8 categories)"),
        _gr_set("harmbench_prompt", "prompt", "0_3_harmbench_prompt.json", " (all unsafe)"),
        _gr_set("toxicchat", "prompt", "0_8_toxic_chat.json", " (human toxicity majority)"),
        _gr_set("harmbench_response", "response", "0_5_harmbench_response.json", " (of the response)"),
        _gr_set("xstest_response", "response", "0_6_xstest_response_harmful.json", " (harmfulness, not refusal)"),
        _gr_set("saferlhf", "response", "0_9_safe_rlhf.json", _RLHF),
        _gr_set("beavertails", "response", "0_A_beaver_tails.json", _RLHF),
        BenchmarkSet(
            "xstest_prompt",
            "prompt",
            load_xstest_prompts,
            "xstest/xstest_prompts.csv",
            "label unsafe → unsafe (the contrast_* types), safe → safe",
        ),
        BenchmarkSet(
            "jailbreakbench_prompt",
            "prompt",
            load_jailbreakbench_prompts,
            "jailbreakbench/{harmful,benign}-behaviors.csv",
            "harmful file → unsafe, benign file → safe",
        ),
        BenchmarkSet(
            "jailbreakbench_response",
            "response",
            load_jailbreakbench_responses,
            "jailbreakbench/judge-comparison.csv",
            "human_majority 1 (jailbroken) → unsafe, 0 → safe",
        ),
    )
}
RSAFE_SUITE: tuple[str, ...] = tuple(name for name, s in SETS.items() if s.source.startswith(_GR))
"""The RSafe paper's public suite as far as it is available here (GuardReasoner's copies)."""


def resolve_sets(spec: str) -> list[str]:
    """`all`, `rsafe` (the paper's suite) or a comma-separated list of set names → set names, in order."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        group = list(SETS) if part == "all" else list(RSAFE_SUITE) if part == "rsafe" else [part]
        for name in group:
            if name not in SETS:
                raise ValueError(f"unknown benchmark set {name!r} (known: all, rsafe, {', '.join(SETS)})")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("no benchmark set given")
    return names


def sample_indices(n: int, limit: int | None, seed: int, name: str = "") -> list[int]:
    """Sorted indexes of a deterministic sample of `limit` out of `n` (all when `limit` is None or ≥ n).

    The generator is seeded with `"<name>:<seed>"` so sets of equal size do not get the same positions.
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return sorted(random.Random(f"{name}:{seed}").sample(range(n), limit))


def load_set(
    name: str, root: str | Path = DEFAULT_BENCHMARKS_DIR, limit: int | None = None, seed: int = 0
) -> list[Item]:
    """The (sampled) items of one registered set, in source order."""
    items = SETS[name].loader(Path(root))
    return [items[i] for i in sample_indices(len(items), limit, seed, name)]


def to_rows(name: str, items: Sequence[Item]) -> tuple[list[dict], list[dict]]:
    """Canonical conversation rows and gold rows (`conversation_id, set, level, index, label`) for a set."""
    level = SETS[name].level
    rows, gold = [], []
    for item in items:
        if (item.response is None) != (level == "prompt"):
            raise ValueError(f"{name}-{item.index}: a {level}-level set needs {'no ' * (level == 'prompt')}response")
        cid = f"{name}-{item.index}"
        messages = [{"role": "user", "content": item.prompt}]
        if item.response is not None:
            messages.append({"role": "assistant", "content": item.response})
        rows.append(
            {"conversation_id": cid, "tenant_id": TENANTS[level], "created_at": CREATED_AT, "messages": messages}
        )
        gold.append({"conversation_id": cid, "set": name, "level": level, "index": item.index, "label": item.label})
    return rows, gold
