"""The training sets in `../shared/data/train/` → labelled texts, with each set's own rows-to-drop applied.

Label directions and drops follow each folder's SOURCE.md: ToxicChat `toxicity == "1"` is unsafe;
GuardReasoner `harmful` is unsafe; Aegis 2.0 prompts are unsafe and their responses safe; JailbreakV prompts are
unsafe; DiaSafety `Unsafe`/`Safe` rates the reply in context. `category` is the set's own category field (None
where the set has none); `training.policy_variants` maps it onto policy codes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

LEVELS = ("prompt", "response")  # a LabelledText's level
LABELS = ("unsafe", "safe")  # its label


@dataclasses.dataclass(frozen=True)
class LabelledText:
    """One labelled training item: a user prompt, and for response-level items the reply judged."""

    source: str
    row_id: str
    level: str  # prompt | response
    prompt: str
    response: str | None
    label: str  # unsafe | safe, under the full default taxonomy
    category: str | None = None


def _excluded(folder: Path, key: str) -> set[str]:
    path = folder / "eval_overlap_exclude.json"
    if not path.is_file():
        return set()
    return {str(entry[key]) for entry in json.loads(path.read_text(encoding="utf-8"))["exclude"]}


def toxicchat(folder: Path) -> Iterator[LabelledText]:
    data = json.loads((folder / "toxic_chat_train.json").read_text(encoding="utf-8"))
    drop = _excluded(folder, "id")
    for row in data["instances"]:
        if row["id"] in drop:
            continue
        label = "unsafe" if row["annotations"]["toxicity"]["majority_human"] == "1" else "safe"
        yield LabelledText("toxicchat_train", row["id"], "prompt", row["instance"], None, label)


def guardreasoner(folder: Path) -> Iterator[LabelledText]:
    rows = json.loads((folder / "guardreasoner_test_5k.json").read_text(encoding="utf-8"))
    drop = _excluded(folder, "index")
    for index, row in enumerate(rows):
        if str(index) in drop:
            continue
        label = {"harmful": "unsafe", "safe": "safe"}[row["label"]]
        yield LabelledText(f"guardreasoner:{row['source']}", str(index), "prompt", row["prompt"], None, label)


def _csv_rows(folder: Path, name: str) -> Iterator[dict[str, str]]:
    """The rows of a set's CSV (UTF-8 with BOM), less those its exclude list names by `id`."""
    drop = _excluded(folder, "id")
    with open(folder / name, encoding="utf-8-sig", newline="") as handle:
        yield from (row for row in csv.DictReader(handle) if row["id"] not in drop)


def aegis2(folder: Path) -> Iterator[LabelledText]:
    for row in _csv_rows(folder, "aegis_900.csv"):
        category = row["category"] or None
        yield LabelledText("aegis2_train", row["id"], "prompt", row["prompt"], None, "unsafe", category)
        if row["instruct_response"].strip():
            reply = row["instruct_response"]
            yield LabelledText("aegis2_train", row["id"], "response", row["prompt"], reply, "safe", category)


def jailbreakv(folder: Path) -> Iterator[LabelledText]:
    for row in _csv_rows(folder, "jailbreak_600.csv"):
        category = row["category"] or None
        yield LabelledText("jailbreakv", row["id"], "prompt", row["prompt"], None, "unsafe", category)


def diasafety(folder: Path) -> Iterator[LabelledText]:
    rows = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    for index, row in enumerate(rows):
        label = {"Unsafe": "unsafe", "Safe": "safe"}[row["label"]]
        yield LabelledText(
            "diasafety_train", str(index), "response", row["context"], row["response"], label, row["category"]
        )


SOURCES = {
    "toxicchat_train": toxicchat,
    "guardreasoner_train_prompts_5k": guardreasoner,
    "aegis2_train_900": aegis2,
    "jailbreakv_600": jailbreakv,
    "diasafety_train": diasafety,
}
"""Folder under the train directory → its reader."""


def read_sources(train_dir: Path, names: tuple[str, ...] = tuple(SOURCES)) -> Iterator[LabelledText]:
    """Every labelled text of the named sets, in a fixed order; a clear error for a missing folder."""
    for name in names:
        folder = train_dir / name
        if not folder.is_dir():
            raise FileNotFoundError(f"training set {name!r} not found at {folder}")
        yield from SOURCES[name](folder)
