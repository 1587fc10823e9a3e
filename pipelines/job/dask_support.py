"""Running the job on Dask distributed: Beam 2.77's `DaskRunner` with what it lacks worked around, here only.

`DaskRunner` below is Beam's `apache_beam.runners.dask.dask_runner.DaskRunner` with four gaps closed. None has
a matching upstream issue that we could find; the runner itself is young (apache/beam#18962 "Support for a Dask
runner", #24578 not yet in the capability matrix; windowing and side inputs in the unmerged PR #27618), so each
is noted with the place in Beam's source it works around:

1. **Tagged outputs are not routed** (`DaskRunner.to_dask_bag_visitor` looks up an input's producer, never its
   tag): every consumer of any output of a multi-output ParDo received all of its outputs. Here each consumer gets
   only its own tag's elements (`_route`).
2. **Outputs emitted in `finish_bundle` are dropped** (`transform_evaluator.apply_dofn_to_bundle` collects the
   results before `invoke_finish_bundle`), which lost every batch a DoFn flushes at the end of a bundle. Here
   they are collected after it (`_run_bundle`), with fresh receivers per bundle (Beam shares one list).
3. **Only the last transform's bag is computed** (`run_pipeline`: `dask.optimize(list(bags.values())[-1])`), so
   every other branch of a pipeline with several sinks never ran. Here every leaf is computed, in one graph.
4. **`DaskRunnerResult.metrics()` raises NotImplementedError**: left as it is. The job's books do not come from
   runner metrics (`pipelines.job.books`); `books.read_counters` reports none for this runner.

Also: `beam.Create` becomes one Dask partition per element unless `--dask_npartitions`/`--dask_partition_size` say
otherwise (Beam's default of 128 elements per partition ran a night's few input files in one task), and without
`--dask_client_address`/`--dask_scheduler_file` the run starts a local cluster of `--dask-workers` worker
processes with one thread each: one engine per worker process (the judge step's engine is process-wide, Beam's
`Shared`), each on its own slice of the machine's cores (`ShareCoresAmongLocalWorkers`). A task a dead worker
was running is re-run by Dask elsewhere; the job's published files and ledger records are named by content, so
the re-run replaces rather than adds (`transforms.stores.ledger`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import typing as t

import dask
import dask.bag as db
from apache_beam import DoFn, pvalue
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as te
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.transforms.sideinputs import SideInputMap
from distributed.diagnostics.plugin import WorkerPlugin

from transforms.engines.cpu_cores import allowed_cores, slice_of_worker
from transforms.engines.cpu_serving import WORKER_CORES_ENV

log = logging.getLogger(__name__)

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def _run_bundle(items, fn, window_fn, label: str, side_inputs, args, kwargs) -> list:
    """One Dask partition as one Beam bundle: setup, start, process, finish, teardown; outputs of
    `finish_bundle` included (gap 2)."""
    receivers = te.OneReceiver()
    handler = _OutputHandler(
        window_fn=window_fn,
        main_receivers=receivers[None],
        tagged_receivers=receivers,
        per_element_output_counter=None,
        output_batch_converter=None,
        process_yields_batches=False,
        process_batch_yields_elements=False,
    )
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn),
        handler,
        context=DoFnContext(label, state=None),
        side_inputs=side_inputs,
        input_args=args,
        input_kwargs=kwargs,
        user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam(),
    )
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    # Beam's receivers hold WindowedValues (main) and TaggedOutput(tag, WindowedValue); windows are dropped
    # as in Beam's own translation (global windows only), the tag is kept for `_route`.
    return [
        pvalue.TaggedOutput(v.tag, v.value.value) if isinstance(v, pvalue.TaggedOutput) else v.value
        for v in receivers.values
    ]


class _ParDo(te.ParDo):
    def apply(self, input_bag: db.Bag, side_inputs=None) -> db.Bag:
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        return input_bag.map(te.get_windowed_value, window_fn).map_partitions(
            _run_bundle, transform.fn, window_fn, transform.label, side_inputs, list(args), kwargs
        )


class _Create(te.Create):
    def apply(self, input_bag=None, side_inputs=None) -> db.Bag:
        if self.bag_kwargs.get("npartitions") or self.bag_kwargs.get("partition_size"):
            return super().apply(input_bag, side_inputs)
        items = self.transform.values
        return db.from_sequence(items, npartitions=max(1, len(items)))


_TRANSLATIONS = {**te.TRANSLATIONS, te.apache_beam.ParDo: _ParDo, te._Create: _Create}


def _is_tagged(item: object, *, tag: str) -> bool:
    return isinstance(item, pvalue.TaggedOutput) and item.tag == tag


def _is_main(item: object) -> bool:
    return not isinstance(item, pvalue.TaggedOutput)


def _route(bag: db.Bag, pcoll: pvalue.PValue) -> db.Bag:
    """Only the elements of `pcoll`'s own output tag (gap 1)."""
    tag = getattr(pcoll, "tag", None)
    if tag in (None, "None"):
        return bag.filter(_is_main)
    return bag.filter(functools.partial(_is_tagged, tag=str(tag))).map(lambda item: item.value)


@dataclasses.dataclass
class _Visitor(PipelineVisitor):
    bag_kwargs: dict
    bags: dict = dataclasses.field(default_factory=dict)
    consumed: set = dataclasses.field(default_factory=set)

    def visit_transform(self, node) -> None:
        op = _TRANSLATIONS.get(node.transform.__class__, te.NoOp)(node, bag_kwargs=self.bag_kwargs)
        kwargs: dict[str, t.Any] = {"input_bag": None, "side_inputs": None}
        inputs = []
        for pcoll in node.inputs:
            if isinstance(pcoll, pvalue.PBegin):
                inputs.append(None)
            elif pcoll.producer in self.bags:
                self.consumed.add(pcoll.producer)
                inputs.append(_route(self.bags[pcoll.producer], pcoll))
        if inputs:
            kwargs["input_bag"] = inputs[0] if len(inputs) == 1 and not isinstance(op, te.Flatten) else inputs
        if node.side_inputs:
            kwargs["side_inputs"] = [
                SideInputMap(
                    type(si),
                    si._view_options(),
                    te.DaskBagWindowedIterator(self.bags.get(si.pvalue.producer), si._window_mapping_fn),
                )
                for si in node.side_inputs
            ]
            self.consumed.update(si.pvalue.producer for si in node.side_inputs)
        self.bags[node] = op.apply(**kwargs)

    def leaves(self) -> list[db.Bag]:
        """The bags nothing else reads (gap 3), each reduced to its partitions' lengths."""
        return [
            bag.map_partitions(lambda part: [sum(1 for _ in part)])
            for node, bag in self.bags.items()
            if node not in self.consumed and isinstance(bag, db.Bag)
        ]


@dataclasses.dataclass
class DaskResult(beam_dask.DaskRunnerResult):
    """Beam's result, which also closes the client and the local cluster this run started."""

    cluster: t.Any = None

    def wait_until_finish(self, duration=None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


class ShareCoresAmongLocalWorkers(WorkerPlugin):
    """Gives each worker of a local cluster its own slice of the machine's cores for its engine.

    Unshared, every worker's engine binds its threads to the same cores (vLLM's CPU default, or the job's
    small-machine default), and the engines spin against each other. Runs again on a worker the nanny restarts
    (it keeps its name, hence its slice).
    """

    name = "rsafe-share-cores"

    def __init__(self, workers: int, cores: list[int]) -> None:
        self.workers = workers
        self.cores = cores

    def setup(self, worker) -> None:
        try:
            index = int(worker.name)
        except (TypeError, ValueError):
            return  # not one of LocalCluster's numbered workers
        os.environ[WORKER_CORES_ENV] = slice_of_worker(index, self.workers, self.cores)

    def teardown(self, worker) -> None:
        """The engines this worker started (a generating one, and a pooling one for a pooled head) stop with it:
        found 2026-12-07, their core processes outlived the closed cluster and spun (load average 96)."""
        from transforms.engines.offline_exit import stop_engine_processes

        stop_engine_processes()


def local_cluster(workers: int):
    """A local `dask.distributed` cluster of `workers` single-threaded, non-daemonic worker processes, each with
    its own cores for its engine (`ShareCoresAmongLocalWorkers`): the vLLM engine starts its core in a child
    process, which a daemonic worker process may not have (dask/distributed#2142, #2718)."""
    import dask.distributed as ddist

    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = ddist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    with ddist.Client(cluster) as client:
        client.register_plugin(ShareCoresAmongLocalWorkers(workers, allowed_cores()))
    return cluster


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with the gaps in this module's docstring closed; a local cluster when no address."""

    def __init__(self, local_workers: int = 2) -> None:
        super().__init__()
        self._local_workers = local_workers

    def run_pipeline(self, pipeline, options) -> DaskResult:
        import dask.distributed as ddist

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        cluster = None
        if not dask_options.get("address") and not dask_options.get("scheduler_file"):
            cluster = local_cluster(self._local_workers)
            dask_options["address"] = cluster.scheduler_address
            log.info("started a local Dask cluster of %d worker processes", self._local_workers)
        client = ddist.Client(**dask_options)
        pipeline.replace_all(dask_overrides())
        visitor = _Visitor(bag_kwargs)
        pipeline.visit(visitor)
        futures = client.compute(list(dask.optimize(*visitor.leaves())))
        return DaskResult(client, futures, cluster)
