"""What a run has already judged, by content key: de-duplication within the run and the cross-night verdict cache.

The judge step asks the memo before the engine. A content judged earlier in this run (same rendered prompt,
policy version, model, template) is not judged again: its judgement is fanned out to the unit. With
`--verdict-cache`, the memo starts filled with the cache's entries for this run's settings, so content judged on
an earlier night is not judged either. The memo lives in a `DiskIndex` (on local disk), one per worker process
and run, so memory does not grow with the input.
"""

from __future__ import annotations

import dataclasses
import pickle
import threading

from transforms.judging.decisions import Judgement
from transforms.judging.verdict_cache import VerdictCache, judgement_from_entry, read_cache_file
from transforms.stores.disk_index import DiskIndex, shared_index

_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Recalled:
    """A judgement found in the memo: whether it came from the verdict cache, and whether this run used it before."""

    judgement: Judgement
    from_cache: bool
    used_before: bool


class JudgementMemo:
    """Content key → judgement for one run in this process (shared by every DoFn instance of the run)."""

    def __init__(self, run_id: str, cache: VerdictCache | None = None) -> None:
        self._index = shared_index(run_id, "judgements", fill=lambda index: _fill_from_cache(index, cache))

    def recall(self, content_key: str) -> Recalled | None:
        """The judgement for `content_key`, if any; marks a cache entry as used by this run."""
        with _LOCK:
            stored = self._index.get(content_key)
            if stored is None:
                return None
            origin, judgement, order = pickle.loads(stored)
            if origin == "cache":
                self._index.put(content_key, pickle.dumps(("cache_used", judgement, order)))
        return Recalled(judgement, from_cache=origin != "run", used_before=origin != "cache")

    def remember(self, content_key: str, judgement: Judgement) -> None:
        """Record a judgement made by this run."""
        with _LOCK:
            self._index.put(content_key, pickle.dumps(("run", judgement, None)))


def _fill_from_cache(index: DiskIndex, cache: VerdictCache | None) -> None:
    """Load the cache's entries for the run's settings; of several for one content key, the earliest wins."""
    if cache is None:
        return
    for path in cache.files:  # the files published when the run was planned, not what it appends itself
        for entry in read_cache_file(path, cache.settings_key):
            order = (entry["cached_at"], entry["run_id"] or "")
            stored = index.get(entry["content_key"])
            if stored is None or order < pickle.loads(stored)[2]:
                index.put(entry["content_key"], pickle.dumps(("cache", judgement_from_entry(entry), order)))
