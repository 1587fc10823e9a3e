"""Duplicate conversation ids across a run: the first copy is kept, every other one is a dead letter.

Two ways to find them: `keep_first` after a GroupByKey on the id (exact across the workers of a distributed
runner), or `KeepFirstSeenDoFn`, streaming, with the ids seen in an on-disk index per worker process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.records import DEAD_LETTER, Conversation, DeadLetter
from transforms.stores.disk_index import shared_index


def _duplicate_dead_letter(dup: Conversation, kept_file: str, kept_row: int | str) -> DeadLetter:
    message = (
        f"{dup.source_file}: row {dup.source_row}: field 'conversation_id' {dup.conversation_id!r} was "
        f"already read from {kept_file} row {kept_row}"
    )
    return DeadLetter.for_conversation(dup, "validate", "duplicate_conversation_id", message)


def keep_first(keyed: tuple[str, Iterable[Conversation]]) -> Iterator[Conversation | TaggedOutput]:
    """After a GroupByKey on the id: the first copy by (source_file, source_row); the rest are dead letters."""
    _, conversations = keyed
    kept, *duplicates = sorted(conversations, key=lambda c: (c.source_file, c.source_row))
    yield kept
    for dup in duplicates:
        yield TaggedOutput(DEAD_LETTER, _duplicate_dead_letter(dup, kept.source_file, kept.source_row))


class KeepFirstSeenDoFn(beam.DoFn):
    """Streaming `keep_first`: a conversation id seen before in this worker → duplicate_conversation_id.

    Files are read in sorted order and rows in file order, so on one worker the first seen is the first by
    (source_file, source_row), as with the GroupByKey; the ids seen live in a `DiskIndex`, not in memory.
    """

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id

    def setup(self) -> None:
        self._seen = shared_index(self._run_id, "conversation_ids")

    def process(self, conversation: Conversation) -> Iterator[Conversation | TaggedOutput]:
        where = f"{conversation.source_file}\x1f{conversation.source_row}".encode()
        earlier = self._seen.add(conversation.conversation_id, where)
        if earlier is None:
            yield conversation
            return
        kept_file, kept_row = earlier.decode().rsplit("\x1f", 1)
        yield TaggedOutput(DEAD_LETTER, _duplicate_dead_letter(conversation, kept_file, kept_row))
