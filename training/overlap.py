"""Proof that no training text is an evaluation text: every string in every file under the benchmarks folder.

Texts are compared whitespace-collapsed and lower-cased (the rule the sets' own exclude lists use). Every file is
read, whatever its set: CSV cells, JSON/JSONL(.gz) string values at any depth; prose files (SOURCE.md, licences)
are skipped. Strings shorter than `MIN_CHARS` (labels, ids, category names) are not texts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

MIN_CHARS = 8
_SPACE = re.compile(r"\s+")
_PROSE = {".md", ".txt", ""}


def normalize_text(text: str) -> str:
    """Whitespace collapsed, lower-cased, stripped."""
    return _SPACE.sub(" ", text).strip().lower()


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _file_strings(path: Path) -> Iterator[str]:
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    stem = name.removesuffix(".gz")
    if stem.endswith(".csv"):
        csv.field_size_limit(1 << 30)
        with opener(path, "rb") as handle:
            raw = handle.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:  # one upstream CSV is Windows-1252
            text = raw.decode("cp1252", errors="replace")
        for row in csv.reader(io.StringIO(text, newline="")):
            yield from row
    elif stem.endswith(".jsonl"):
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield from _strings(json.loads(line))
    elif stem.endswith(".json"):
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from _strings(json.load(handle))
    else:
        raise ValueError(f"{path}: unknown benchmark file format (expected .csv, .json or .jsonl, maybe .gz)")


def benchmark_files(benchmarks_dir: Path) -> list[Path]:
    """Every data file under the benchmarks folder (prose files excluded), sorted."""
    if not benchmarks_dir.is_dir():
        raise FileNotFoundError(f"benchmarks folder not found: {benchmarks_dir}")
    return sorted(p for p in benchmarks_dir.rglob("*") if p.is_file() and p.suffix.lower() not in _PROSE)


def evaluation_texts(benchmarks_dir: Path) -> frozenset[str]:
    """Normalised texts of every string in every benchmark data file."""
    texts = set()
    for path in benchmark_files(benchmarks_dir):
        for value in _file_strings(path):
            normal = normalize_text(value)
            if len(normal) >= MIN_CHARS:
                texts.add(normal)
    return frozenset(texts)


def overlapping(texts: Iterable[str], eval_texts: frozenset[str]) -> list[str]:
    """The given texts that equal an evaluation text (normalised)."""
    return [t for t in texts if normalize_text(t) in eval_texts]
