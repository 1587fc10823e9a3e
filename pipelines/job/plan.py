"""The validated plan of one run: the value the pipeline builder, the manifest and the lease all read."""

from __future__ import annotations

import dataclasses
from typing import Any

from policies import PolicyRegistry
from transforms.engines.protocol import EngineSpec
from transforms.io.date_window import DateWindow
from transforms.io.file_splits import FileSplit
from transforms.io.input_files import ListedFile
from transforms.judging.run_context import RunContext
from transforms.judging.verdict_cache import VerdictCache


@dataclasses.dataclass(frozen=True)
class JobPlan:
    """Everything the pipeline needs, validated before it is built."""

    input_files: tuple[str, ...]
    output: str
    run_id: str
    dates: DateWindow | None  # --date or --since/--until; None: every day
    registry: PolicyRegistry
    template: str
    engine_spec: EngineSpec
    context: RunContext
    batch_size: int
    flush_rows: int
    done_keys: frozenset[str] = frozenset()  # resume keys of verdicts earlier runs published (read under the lease)
    dedup: str = "worker"  # worker: streaming, on-disk indexes per worker | shuffle: GroupByKeys
    verdict_cache: VerdictCache | None = None  # --verdict-cache: judgements reused across runs
    recorded_dead_letters: frozenset[str] = frozenset()  # keys of dead letters earlier runs published
    strict_input: bool = False  # --strict-input: no message normalisation
    column_map: tuple[tuple[str, str], ...] = ()  # --column-map: (job's column, file's column)
    listed_files: tuple[ListedFile, ...] = ()  # the files the patterns matched, with size and mtime
    reread_consumed: bool = False  # --reread-consumed: read files an earlier run consumed as if new
    # set under the lease by `pipelines.job.night_input.with_input_plan`: the splits to read (None: the patterns,
    # unpruned), the files opened, and the manifest's `input` counts
    input_splits: tuple[FileSplit, ...] | None = None
    opened_files: tuple[ListedFile, ...] = ()
    input_counts: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False)
