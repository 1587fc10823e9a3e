"""`--column-map`: read logs whose columns have other names, e.g. `conversation_id=id,tenant_id=org,messages=chat`.

A mapping is {the job's column name: the file's column name}. It is checked against each file's schema when the
job is planned (`check_column_map`: a mapped column the file's layout needs and the file lacks is an error naming
the file and the column), and applied when a file is read (`mapped_schema`, then columns are read by their
source names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa

from transforms.io.log_schema import CANONICAL, CANONICAL_COLUMNS, OPTIONAL_TURN_COLUMNS, TURN_COLUMNS, detect_layout

MAPPABLE: tuple[str, ...] = tuple(dict.fromkeys(CANONICAL_COLUMNS + TURN_COLUMNS + OPTIONAL_TURN_COLUMNS))
"""The job's column names a `--column-map` may map."""


class ColumnMapError(ValueError):
    """A `--column-map` that is malformed, or names a column an input file does not have."""


def parse_column_map(text: str | Iterable[str] | None) -> dict[str, str]:
    """`name=source,...` (or several such strings) → {name: source}; raises `ColumnMapError` naming the entry."""
    if not text:
        return {}
    pieces = [text] if isinstance(text, str) else list(text)
    mapping: dict[str, str] = {}
    for entry in (e.strip() for piece in pieces for e in piece.split(",")):
        if not entry:
            continue
        name, sep, source = (part.strip() for part in entry.partition("="))
        if not sep or not name or not source:
            raise ColumnMapError(f"--column-map entry {entry!r}: expected NAME=SOURCE_COLUMN")
        if name not in MAPPABLE:
            raise ColumnMapError(f"--column-map entry {entry!r}: {name!r} is not one of {', '.join(MAPPABLE)}")
        if name in mapping and mapping[name] != source:
            raise ColumnMapError(f"--column-map maps {name!r} twice ({mapping[name]!r} and {source!r})")
        mapping[name] = source
    sources = list(mapping.values())
    for source in sources:
        if sources.count(source) > 1:
            names = [n for n, s in mapping.items() if s == source]
            raise ColumnMapError(f"--column-map maps column {source!r} to several names: {', '.join(names)}")
    return mapping


def mapped_schema(schema: pa.Schema, mapping: Mapping[str, str]) -> pa.Schema:
    """`schema` with mapped source columns under the job's names (a column already so named is then left out)."""
    if not mapping:
        return schema
    renamed = {source: name for name, source in mapping.items() if source in schema.names}
    fields = [
        field.with_name(renamed[field.name]) if field.name in renamed else field
        for field in schema
        if field.name in renamed or field.name not in renamed.values()
    ]
    return pa.schema(fields)


def source_column(name: str, mapping: Mapping[str, str]) -> str:
    """The file's column read for the job's column `name`."""
    return mapping.get(name, name)


def shown_column(name: str, mapping: Mapping[str, str]) -> str:
    """How a message names a column: `org` (tenant_id) when mapped, else the name."""
    return f"{mapping[name]} ({name})" if name in mapping else name


def column_map_problem(path: str, schema: pa.Schema, mapping: Mapping[str, str]) -> str | None:
    """Why `mapping` does not fit the file at `path`, or None (only the columns its layout needs are checked)."""
    layout = detect_layout(mapped_schema(schema, mapping))
    needed = CANONICAL_COLUMNS if layout == CANONICAL else TURN_COLUMNS
    for name in needed:
        source = mapping.get(name)
        if source is not None and source not in schema.names:
            return (
                f"{path}: column {source!r} (mapped to {name} by --column-map) is missing; "
                f"the file's columns: {', '.join(schema.names)}"
            )
    return None


def check_column_map(paths: Iterable[str], mapping: Mapping[str, str], read_schema: Callable[[str], pa.Schema]) -> None:
    """Raise `ColumnMapError` for the first file the mapping does not fit (unreadable files are left to the read
    step, which dead-letters them)."""
    if not mapping:
        return
    for path in paths:
        try:
            schema = read_schema(path)
        except Exception:
            continue
        problem = column_map_problem(path, schema, mapping)
        if problem:
            raise ColumnMapError(problem)
