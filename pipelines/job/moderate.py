"""The nightly moderation job: `run(argv)` validates everything, builds the pipeline, runs it, checks the books.

    python -m pipelines.moderate --input 'logs/*.parquet' --output out/ [options]

Runner: with no `--runner` (or `--runner DirectRunner`) the job runs on Beam's in-process FnApiRunner — the
engine behind the DirectRunner — directly, skipping the DirectRunner's attempt to start the Prism runner,
which would try to download its binary. `--runner DaskRunner` runs on Dask distributed (`pipelines.job.dask_support`);
any other runner (Portable, Dataflow, Flink, Spark) is passed through to Beam (`pipelines.job.runners`). The books
are kept by what the run publishes (`pipelines.job.books`), so the accounting holds on any of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.job.backfill import BackfillResult, run_by_day
from pipelines.job.books import (
    CountDeadLetters,
    CountedMakeUnits,
    CountSkipped,
    SkipPublished,
    read_books,
    read_counters,
)
from pipelines.job.console import new_run_id
from pipelines.job.exit_codes import AccountingError, exit_code_for
from pipelines.job.gc_tuning import fewer_collections
from pipelines.job.manifest import RunManifest, mark_abandoned
from pipelines.job.night_input import record_consumed, with_input_plan
from pipelines.job.options import ModerationOptions, judge_settings
from pipelines.job.plan import JobPlan
from pipelines.job.resume_keys import with_published
from pipelines.job.run_lease import LeaseHeldError, take_lease
from pipelines.job.runners import is_local, make_runner
from pipelines.job.usage import check_usage
from policies import DEFAULT_POLICY_DIR, DEFAULT_TENANTS_FILE, load_policy_registry
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.engines.protocol import EngineSpec
from transforms.engines.vllm_engine import VllmEngineSpec
from transforms.io.column_map import check_column_map, parse_column_map
from transforms.io.date_window import DateWindow
from transforms.io.input_files import list_input_files, read_file_schema
from transforms.io.input_plan import outside_by_partition
from transforms.io.read_logs import (
    CONVERSATIONS,
    DEAD_LETTER,
    DUPLICATES,
    SKIPPED,
    ReadConversations,
)
from transforms.io.write_partitions import WritePartitionsDoFn
from transforms.judging.batching import BatchPerKeyDoFn
from transforms.judging.calibration import Calibration
from transforms.judging.judge_dofn import JudgeUnitsDoFn, UnitGroup, group_units
from transforms.judging.run_context import RunContext
from transforms.judging.verdict_cache import append_to_cache, open_cache
from transforms.stores.disk_index import release_indexes
from transforms.stores.progress import PROGRESS
from transforms.stores.telemetry import count

log = logging.getLogger("rsafe_batch")


def _count_verdict(row: dict) -> dict:
    count("verdicts_written", row["tenant_id"])
    count(f"verdict_{row['verdict']}", row["tenant_id"])
    return row


def _key_by_policy(group: UnitGroup) -> tuple[str, UnitGroup]:
    """(content key, units) → (policy version, (content key, units)) for per-policy batches."""
    return group[1][0].policy_version, group


def _group_identical(units):
    """Units → (content key, units sharing it, in judging order), through a GroupByKey (`--dedup shuffle`)."""
    return (
        units
        | "KeyByContent" >> beam.WithKeys(lambda u: u.content_key)
        | "GroupIdentical" >> beam.GroupByKey()
        | "OrderGroup" >> beam.MapTuple(lambda key, group: (key, group_units(group)))
    )


def _write_dead_letters(name: str, dead_letters: beam.PCollection, plan: JobPlan) -> beam.PCollection:
    counted = dead_letters | f"Count{name}DeadLetters" >> beam.ParDo(
        CountDeadLetters(plan.output, plan.run_id, name, plan.recorded_dead_letters)
    )
    _ = counted | f"Write{name}Errors" >> beam.ParDo(WritePartitionsDoFn(plan.output, plan.run_id, "errors"))
    return counted


def build_pipeline(pipeline: beam.Pipeline, plan: JobPlan) -> dict:
    """Logs in → verdict and dead-letter partitions out. Returns the verdict rows and the dead-letter rows of
    each step that makes them.

    `--dedup worker` (the default on the in-process runner) makes it one fused, streaming stage from the file
    list to the writers: duplicates are found through on-disk indexes (`transforms.stores.disk_index`) instead of
    GroupByKeys, so memory stays flat. `--dedup shuffle` groups conversation ids and identical units with
    GroupByKeys, exact across the workers of a distributed runner.
    """
    streaming = plan.dedup == "worker"
    read = pipeline | "Read" >> ReadConversations(
        plan.input_files,
        dates=plan.dates,
        streaming_run_id=plan.run_id if streaming else None,
        strict_input=plan.strict_input,
        column_map=dict(plan.column_map),
        splits=plan.input_splits,
    )
    _ = read[SKIPPED] | "CountSkipped" >> beam.ParDo(CountSkipped(plan.output, plan.run_id))
    made = read[CONVERSATIONS] | "MakeUnits" >> beam.ParDo(
        CountedMakeUnits(plan.output, plan.run_id, plan.registry, plan.template, plan.context.model, plan.engine_spec)
    ).with_outputs(DEAD_LETTER, main="units")
    fresh = made["units"] | "SkipPublished" >> beam.ParDo(SkipPublished(plan.output, plan.run_id, plan.done_keys))
    if streaming:  # one group per unit: identical units meet in the judge step's memo
        keyed = fresh | "KeyByPolicy" >> beam.Map(lambda u: _key_by_policy((u.content_key, (u,))))
    else:
        keyed = _group_identical(fresh) | "KeyByPolicy" >> beam.Map(_key_by_policy)
    judged = (
        keyed
        | "BatchPerPolicy" >> beam.ParDo(BatchPerKeyDoFn(plan.batch_size))
        | "Judge"
        >> beam.ParDo(JudgeUnitsDoFn(plan.engine_spec, plan.context, plan.verdict_cache, plan.output)).with_outputs(
            DEAD_LETTER, main="rows"
        )
    )
    append_to_cache(judged["rows"], plan.verdict_cache, plan.run_id)
    verdicts = judged["rows"] | "CountVerdicts" >> beam.Map(_count_verdict)
    _ = verdicts | "WriteVerdicts" >> beam.ParDo(
        WritePartitionsDoFn(plan.output, plan.run_id, "verdicts", flush_rows=plan.flush_rows)
    )
    # Each source of dead letters is written by its own step, not through a Flatten: on the FnApiRunner a
    # Flatten's consumer waits for (and holds in memory) every input, so memory would grow with bad input.
    sources = {
        "Read": read[DEAD_LETTER],
        "DuplicateIds": read[DUPLICATES],
        "MakeUnits": made[DEAD_LETTER],
        "Judge": judged[DEAD_LETTER],
    }
    errors = [_write_dead_letters(name, dead_letters, plan) for name, dead_letters in sources.items()]
    return {"verdicts": verdicts, "errors": errors}


def _engine_spec(options: ModerationOptions) -> EngineSpec:
    if options.engine == "fake":
        return FakeEngineSpec(max_context_tokens=options.max_model_len, seconds_per_call=options.fake_seconds_per_call)
    return VllmEngineSpec(
        model=options.model,
        dtype=options.dtype,
        max_model_len=options.max_model_len,
        enforce_eager=options.enforce_eager,
        kv_cache_gib=options.kv_cache_gib,
        block_size=options.block_size,
        max_num_seqs=options.max_num_seqs,
        seed=options.seed,
    )


def resolve_dedup(options: PipelineOptions) -> str:
    """`--dedup auto`: `worker` on the in-process runner with one worker, `shuffle` anywhere else."""
    chosen = options.view_as(ModerationOptions).dedup
    if chosen != "auto":
        return chosen
    return "worker" if is_local(options) else "shuffle"


def plan_job(options: ModerationOptions, engine_spec: EngineSpec | None = None) -> JobPlan:
    """Validate options, policies, tenants and inputs; nothing runs before this has passed."""
    if not options.input:
        raise ValueError("--input is required (a Parquet file pattern; repeatable)")
    if not options.output:
        raise ValueError("--output is required")
    if options.batch_size < 1 or options.flush_rows < 1:
        raise ValueError("--batch-size and --flush-rows must be >= 1")
    settings = judge_settings(options)
    column_map = parse_column_map(options.column_map)
    registry = load_policy_registry(
        options.policies or [str(DEFAULT_POLICY_DIR)],
        options.tenants or str(DEFAULT_TENANTS_FILE),
        reject_unknown_tenants=options.reject_unknown_tenants,
    )
    engine_spec = engine_spec or _engine_spec(options)
    listed = tuple(list_input_files(options.input))
    dates = DateWindow.of(options.date, options.since, options.until)
    in_window = [f.path for f in listed if not outside_by_partition(f, dates)]
    check_column_map(in_window, column_map, read_file_schema)  # before anything is written
    model = _model_label(engine_spec)
    output = options.output.rstrip("/")
    run_id = options.run_id or new_run_id()
    context = RunContext(
        run_id=run_id, model=model, settings=settings, calibration=load_calibration(options.calibration)
    )
    return JobPlan(
        input_files=tuple(f.path for f in listed),
        listed_files=listed,
        reread_consumed=options.reread_consumed,
        output=output,
        run_id=run_id,
        dates=dates,
        registry=registry,
        template=options.template,
        engine_spec=engine_spec,
        context=context,
        batch_size=options.batch_size,
        flush_rows=options.flush_rows,
        dedup=resolve_dedup(options),
        verdict_cache=open_cache(options.verdict_cache, context, engine_spec) if options.verdict_cache else None,
        strict_input=options.strict_input,
        column_map=tuple(column_map.items()),
    )


def load_calibration(path: str | None) -> Calibration | None:
    """The `--calibration` file, checked before anything runs (a bad one is a usage error)."""
    if not path:
        return None
    try:
        with FileSystems.open(path) as handle:
            return Calibration.from_json(handle.read().decode("utf-8"), path)
    except OSError as exc:
        raise ValueError(f"--calibration {path}: cannot read it: {exc}") from exc


def _model_label(engine_spec: EngineSpec) -> str:
    """The model recorded in the manifest and on every verdict row (the embedded guard: base + adapter version)."""
    if isinstance(engine_spec, VllmEngineSpec):
        return engine_spec.model_label
    return getattr(engine_spec, "model", None) or getattr(engine_spec, "model_name", type(engine_spec).__name__)


def run(argv: Sequence[str] | None = None, engine_spec: EngineSpec | None = None) -> RunManifest | BackfillResult:
    """Run the job; returns its manifest (with `--day-by-day`, the backfill's days). Raises when the run fails or
    its accounting does not hold."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    check_usage(argv)
    options = PipelineOptions(argv)
    FileSystems.set_options(options)  # the launcher lists inputs and takes the lease before Beam would set them
    job = options.view_as(ModerationOptions)
    if job.day_by_day:  # one run per day (`pipelines.job.backfill`)
        dates = DateWindow.of(job.date, job.since, job.until)
        return run_by_day(argv, dates, job.run_id or new_run_id(), job.output or "", lambda a: run(a, engine_spec))
    plan = plan_job(job, engine_spec)
    if job.wait_for_lock < 0 or job.lease_ttl <= 0:
        raise ValueError("--wait-for-lock must be >= 0 and --lease-ttl > 0")
    with take_lease(plan.output, plan.run_id, job.wait_for_lock, job.lease_ttl) as lease:
        abandoned = mark_abandoned(plan.output, plan.run_id)
        plan = with_input_plan(with_published(plan))  # pruned by the window, less what earlier runs consumed
        manifest = RunManifest.start(plan, options.get_all_options(drop_default=True), abandoned)
        log.info("run %s: %d input file(s) → %s", plan.run_id, len(plan.input_files), plan.output)
        try:
            rows_read = plan.input_counts["rows_read"]
            PROGRESS.start(rows_read)
            with (
                fewer_collections(),
                beam.Pipeline(runner=make_runner(options, job.dask_workers), options=options) as pipeline,
            ):
                build_pipeline(pipeline, plan)
            if lease.lost:
                raise LeaseHeldError(f"lost the output's lease during the run: {lease.lost}")
            manifest.runner_metrics = read_counters(pipeline.result)
            manifest.finish(rows_read, read_books(plan.output, plan.run_id), plan.registry.likely_typo_of)
            if manifest.status == "succeeded":
                record_consumed(plan)
        except BaseException as exc:
            manifest.fail(exc)
            raise
        finally:
            release_indexes(plan.run_id)
    if manifest.accounting_problems:
        raise AccountingError("accounting does not hold: " + "; ".join(manifest.accounting_problems))
    return manifest


def print_help() -> None:
    """The job's own options (Beam's runner options are accepted too; see Beam's docs)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.moderate", description=__doc__.strip().splitlines()[0], allow_abbrev=False
    )
    ModerationOptions._add_argparse_args(parser)
    parser.add_argument("--runner", help="Beam runner (default: the in-process FnApiRunner)")
    parser.print_help()


def main() -> None:
    """Command-line entry point: logs to stderr; on failure exits with the code of its kind
    (`pipelines.job.exit_codes`)."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        print_help()
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its INFO is per-transform type-hint chatter
    try:
        manifest = run()
    except Exception as exc:
        code = exit_code_for(exc)
        log.error("run failed (exit %d): %s: %s", code, type(exc).__name__, exc)
        sys.exit(code)
    log.info("run %s succeeded: %s", manifest.run_id, manifest.summary_line())


if __name__ == "__main__":
    main()
