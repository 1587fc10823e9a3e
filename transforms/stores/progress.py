"""Run progress inside one worker process: units planned (estimated while reading goes on), judged, ETA.

The in-process runner reads, renders and judges in one process, so the steps share this tally: `run()` sets the
rows to read (from the Parquet footers), the unit step notes the rows it has seen and the units they made, the
judge step notes what it judged. Units planned = units made so far, scaled up by the rows still unread. On a
distributed runner each worker only knows its own share; the lines then say so by their numbers.
"""

from __future__ import annotations

import dataclasses
import threading
import time


@dataclasses.dataclass
class Progress:
    """Counts of this process's share of the run."""

    rows_total: int = 0
    rows_seen: int = 0
    units_made: int = 0
    units_judged: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def start(self, rows_total: int) -> None:
        with self._lock:
            self.rows_total, self.rows_seen, self.units_made, self.units_judged = rows_total, 0, 0, 0
            self.started = time.monotonic()

    def saw(self, rows: int, units: int) -> None:
        with self._lock:
            self.rows_seen += rows
            self.units_made += units

    def judged(self, units: int) -> None:
        with self._lock:
            self.units_judged += units

    def planned(self) -> tuple[int, bool]:
        """(units planned, exact): exact once every row has been seen, else scaled from the rows seen so far."""
        if not self.rows_seen or self.rows_seen >= self.rows_total:
            return self.units_made, bool(self.rows_seen)
        return round(self.units_made * self.rows_total / self.rows_seen), False

    def eta_seconds(self) -> float | None:
        """Seconds left at the judging rate so far (None before anything was judged)."""
        elapsed = time.monotonic() - self.started
        if not self.units_judged or elapsed <= 0:
            return None
        planned, _ = self.planned()
        return max(planned - self.units_judged, 0) / (self.units_judged / elapsed)

    def describe(self) -> str:
        """`75/~120 units planned, ETA 3m10s` style text for the progress lines."""
        planned, exact = self.planned()
        eta = self.eta_seconds()
        eta_text = "" if eta is None else f", ETA {int(eta // 60)}m{int(eta % 60):02d}s"
        return f"{self.units_judged}/{'' if exact else '~'}{planned} units{eta_text}"


PROGRESS = Progress()
"""This process's tally (set up by `pipelines.job.moderate.run`)."""
