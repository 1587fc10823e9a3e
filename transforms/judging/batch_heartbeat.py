"""Heartbeat lines while engine batches run, from one long-lived thread per process.

A thread started and joined per batch cost the per-row path ~20 ms of wall time a batch on a loaded 2-core machine
(`Thread.start` waits for the new thread to be scheduled): 135 batches of a 20k-row fake-engine run spent 3 s in
it (cProfile of `benchmarks/plumbing_scale.py`). Here a batch only registers itself under a condition variable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator


@dataclasses.dataclass
class _Batch:
    size: int
    done_before: int
    every_s: float
    started: float
    next_at: float
    logger: logging.Logger
    describe: Callable[[], str]


class BatchHeartbeat:
    """Logs a line every `every_s` seconds for each batch still running; the thread starts with the first batch
    (again after a fork, which does not copy it)."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._batches: dict[int, _Batch] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def running(
        self, size: int, done_before: int, every_s: float, logger: logging.Logger, describe: Callable[[], str]
    ) -> Iterator[None]:
        """While the block runs, the batch of `size` units gets a heartbeat line every `every_s` seconds."""
        now = time.monotonic()
        with self._wake:
            token = next(self._tokens)
            self._batches[token] = _Batch(size, done_before, every_s, now, now + every_s, logger, describe)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="rsafe-progress", daemon=True)
                self._thread.start()
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._batches.pop(token, None)

    def _beat(self) -> None:
        with self._wake:
            while True:
                if not self._batches:
                    self._wake.wait()
                    continue
                now = time.monotonic()
                for batch in list(self._batches.values()):
                    if batch.next_at <= now:
                        batch.next_at += batch.every_s
                        seconds, size, before = now - batch.started, batch.size, batch.done_before
                        message = "judging a batch of %d unit(s): %.0f s so far (%d done before it in this worker; %s)"
                        batch.logger.info(message, size, seconds, before, batch.describe(), extra={"progress": True})
                self._wake.wait(max(min(b.next_at for b in self._batches.values()) - now, 0.0))


HEARTBEAT = BatchHeartbeat()
