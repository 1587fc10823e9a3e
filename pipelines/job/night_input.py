"""A night's input, planned under the output's lease: pruned by the window, less what earlier runs consumed."""

from __future__ import annotations

import dataclasses

from pipelines.job.consumed_files import consumed_check, read_consumed, work_fingerprint, write_consumed
from pipelines.job.plan import JobPlan
from transforms.io.file_splits import SPLIT_ROWS
from transforms.io.input_plan import plan_input


def with_input_plan(plan: JobPlan) -> JobPlan:
    """The plan with its splits to read and the manifest's input counts (`transforms.io.input_plan`). With a bounded
    window and without `--reread-consumed`, files consumed unchanged by earlier runs of its days are skipped."""
    dates = plan.dates
    consumed = None
    if dates is not None and dates.bounded and not plan.reread_consumed:
        records = read_consumed(plan.output, dates.days() or [], work_fingerprint(plan))
        consumed = consumed_check(records, dates)
    planned = plan_input(
        plan.listed_files,
        dates,
        consumed,
        split_rows=None if plan.dedup == "worker" else SPLIT_ROWS,  # the streaming path reads files in order
        strict=plan.strict_input,
        column_map=dict(plan.column_map),
    )
    return dataclasses.replace(
        plan, input_splits=planned.splits, opened_files=planned.opened, input_counts=dataclasses.asdict(planned.counts)
    )


def record_consumed(plan: JobPlan) -> None:
    """After a succeeded run with a bounded window: the consumed-files record of each of its days."""
    if plan.dates is not None and plan.dates.bounded and plan.input_splits is not None:
        write_consumed(plan.output, plan.run_id, plan.dates, plan.opened_files, work_fingerprint(plan))
