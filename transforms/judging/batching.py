"""Batching units for the engine: per policy while a run goes on, in policy order at its end."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue


class BatchPerKeyDoFn(beam.DoFn):
    """(key, value) → lists of up to `batch_size` values sharing a key, emitted as soon as they are full.

    Like `GroupIntoBatches` without state or timers: a full batch holds one key (one policy per engine call
    keeps its prefix hot) and flows downstream at once (verdicts are published while the run goes on). When
    the bundle finishes, what is left of every key is emitted in key order, in batches of up to `batch_size`
    that may span keys, so the tail of a run makes few, full engine calls rather than one small call per key.
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._batch_size = batch_size

    def start_bundle(self) -> None:
        self._buffers: dict[object, list] = {}

    def process(self, element: tuple[object, object]) -> Iterator[list]:
        key, value = element
        buffer = self._buffers.setdefault(key, [])
        buffer.append(value)
        if len(buffer) >= self._batch_size:
            yield self._buffers.pop(key)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        rest = [value for key in sorted(self._buffers, key=str) for value in self._buffers[key]]
        self._buffers = {}
        for start in range(0, len(rest), self._batch_size):
            yield WindowedValue(rest[start : start + self._batch_size], MIN_TIMESTAMP, [GlobalWindow()])
