"""A key → value index on local disk (SQLite), for what a streaming run must remember about everything it saw.

The streaming path (`--dedup worker`) remembers every conversation id read and every judgement made, so that a
duplicate is recognised however late it arrives, without a GroupByKey that would hold the whole input in memory
on the in-process runner. Each index is a private temporary SQLite database (deleted when closed): its page cache
is bounded (a few MiB) and the rest lives on local disk, so memory stays flat whatever the input size.

Indexes are per process and per run (`shared_index(run_id, name)`): every DoFn instance of a run in a worker
process sees the same one. `release_indexes(run_id)` closes them when the run is over.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

_LOCK = threading.Lock()
_OPEN: dict[tuple[str, str], DiskIndex] = {}


class DiskIndex:
    """A string → bytes map in a private temporary SQLite database; safe to share between threads."""

    def __init__(self) -> None:
        # "" = a private temporary database on disk, deleted when the connection closes.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
        self._lock = threading.Lock()

    def add(self, key: str, value: bytes) -> bytes | None:
        """Store `value` under `key` unless the key is there; returns the value already stored, else None."""
        with self._lock:
            if self._db.execute("INSERT OR IGNORE INTO entries VALUES (?, ?)", (key, value)).rowcount == 1:
                return None
            return self._db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()[0]

    def get(self, key: str) -> bytes | None:
        """The value under `key`, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key`, replacing what was there."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (key, value))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM entries").fetchone()[0]

    def close(self) -> None:
        """Close and delete the database."""
        with self._lock:
            self._db.close()


def shared_index(run_id: str, name: str, fill: Callable[[DiskIndex], None] | None = None) -> DiskIndex:
    """The process's index `name` of run `run_id`, created (and filled by `fill`) on first use."""
    with _LOCK:
        index = _OPEN.get((run_id, name))
        if index is None:
            index = DiskIndex()
            if fill is not None:
                fill(index)
            _OPEN[(run_id, name)] = index
        return index


def release_indexes(run_id: str) -> None:
    """Close (and delete) every index of run `run_id` in this process."""
    with _LOCK:
        for key in [k for k in _OPEN if k[0] == run_id]:
            _OPEN.pop(key).close()
