"""The batch heartbeat: one thread per process however many batches run, a line per batch while it runs."""

from __future__ import annotations

import logging
import threading
import time

from transforms.judging.batch_heartbeat import BatchHeartbeat
from transforms.judging.judge_dofn import progress_heartbeat


def test_many_batches_start_no_thread_each(monkeypatch) -> None:
    started: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for n in range(50):
        with progress_heartbeat(8, n):
            pass
    assert started.count("rsafe-progress") <= 1


def test_overlapping_batches_each_get_their_lines(caplog) -> None:
    heartbeat, logger = BatchHeartbeat(), logging.getLogger("test.heartbeat")
    with caplog.at_level(logging.INFO, logger="test.heartbeat"):
        with heartbeat.running(3, 0, 0.05, logger, lambda: "a"):
            with heartbeat.running(5, 3, 0.05, logger, lambda: "b"):
                time.sleep(0.3)
            time.sleep(0.15)
        time.sleep(0.15)  # no line once both have ended
    lines = [r.getMessage() for r in caplog.records]
    small = [line for line in lines if "batch of 3" in line]
    large = [line for line in lines if "batch of 5" in line]
    assert len(small) >= len(large) >= 3 and "3 done before it" in large[0]
    ended = len(lines)
    time.sleep(0.15)
    assert len(caplog.records) == ended
