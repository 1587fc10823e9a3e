"""Arrow data of one log file → `RawConversation`s (values as read, before validation). Pure functions.

`names` maps the job's column names to the file's (`--column-map`); text stays bytes where validation decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from transforms.io.log_schema import CANONICAL, TURN_PER_ROW, message_values, raw_values, text_values, timestamp_values
from transforms.io.normalise import RawMessage
from transforms.io.validate_logs import RawConversation, Turn


def canonical_batch(
    batch: pa.RecordBatch, path: str, first_row: int, names: dict[str, str]
) -> Iterator[RawConversation]:
    """The conversations of one canonical batch (one per row; `first_row`: the batch's first row in its file)."""
    ids = text_values(batch.column(names["conversation_id"]))
    tenants = text_values(batch.column(names["tenant_id"]))
    created = timestamp_values(batch.column(names["created_at"]))
    messages = message_values(batch.column(names["messages"]))
    for i in range(batch.num_rows):
        row = first_row + i
        turns = None if messages[i] is None else [Turn(row, index, m) for index, m in enumerate(messages[i])]
        yield RawConversation(path, CANONICAL, [row], ids[i], [(row, tenants[i])], [(row, created[i])], turns)


def turn_conversations(table: pa.Table, path: str, names: dict[str, str]) -> Iterator[RawConversation]:
    """The turn rows grouped by conversation_id, in order of each conversation's first row."""
    ids = text_values(table.column(names["conversation_id"]))
    tenants = text_values(table.column(names["tenant_id"]))
    created = timestamp_values(table.column(names["created_at"]))
    turn_indexes = table.column(names["turn_index"]).cast(pa.int64()).to_pylist()
    roles = raw_values(table.column(names["role"]))
    contents = raw_values(table.column(names["content"]))
    absent = [None] * table.num_rows
    calls = raw_values(table.column(names["tool_calls"])) if "tool_calls" in names else absent
    tool_names = raw_values(table.column(names["name"])) if "name" in names else absent
    groups: dict[object, list[int]] = {}
    for row, cid in enumerate(ids):
        groupable = isinstance(cid, str) and cid.strip()
        groups.setdefault(cid if groupable else ("ungroupable row", row), []).append(row)
    for rows in groups.values():
        yield RawConversation(
            source_file=path,
            layout=TURN_PER_ROW,
            rows=rows,
            conversation_id=ids[rows[0]],
            tenant_ids=[(r, tenants[r]) for r in rows],
            created_ats=[(r, created[r]) for r in rows],
            turns=[Turn(r, turn_indexes[r], RawMessage(roles[r], contents[r], calls[r], tool_names[r])) for r in rows],
        )
