"""Which Beam runner a run uses, and the options its module declares.

- none, `DirectRunner`, `FnApiRunner`: Beam's in-process FnApiRunner, selected directly (Beam 2.77's DirectRunner
  first tries to start Prism, whose binary it downloads);
- `DaskRunner` (or its module path): `pipelines.job.dask_support.DaskRunner`, on `--dask_client_address` /
  `--dask_scheduler_file`, or on a local cluster of `--dask-workers` processes;
- anything else (`PortableRunner`, `FlinkRunner`, `SparkRunner`, `DataflowRunner`, a module path): Beam's.

`import_runner_options(argv)` imports the chosen runner's module first, so `reject_unknown_args` knows every
option it declares (Beam only registers an options class once its module is imported).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner")
RUNNER_MODULES = {
    "DaskRunner": "apache_beam.runners.dask.dask_runner",
    "PortableRunner": "apache_beam.runners.portability.portable_runner",
    "FlinkRunner": "apache_beam.runners.portability.flink_runner",
    "SparkRunner": "apache_beam.runners.portability.spark_runner",
    "DataflowRunner": "apache_beam.runners.dataflow.dataflow_runner",
    "PrismRunner": "apache_beam.runners.portability.prism_runner",
}


def short_name(runner: str | None) -> str | None:
    """`apache_beam.runners.dask.dask_runner.DaskRunner` → `DaskRunner`; other names unchanged."""
    return runner.rsplit(".", 1)[-1] if runner else runner


def _runner_in(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--runner" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--runner="):
            return arg.partition("=")[2]
    return None


def import_runner_options(argv: Sequence[str]) -> None:
    """Import the module of the runner `argv` names, registering its options classes (missing module: Beam
    says so when the run starts)."""
    runner = _runner_in(argv)
    module = RUNNER_MODULES.get(short_name(runner) or "") or (runner.rpartition(".")[0] if runner else "")
    if module:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def is_local(options: PipelineOptions) -> bool:
    """The in-process runner with one worker (the streaming `--dedup worker` path)."""
    runner = options.view_as(StandardOptions).runner
    workers = options.view_as(DirectOptions).direct_num_workers or 1
    return runner in LOCAL_RUNNERS and workers <= 1


def make_runner(options: PipelineOptions, dask_workers: int = 2):
    """The runner object (or name, for Beam to resolve) the run's options ask for."""
    name = options.view_as(StandardOptions).runner
    if name in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    if short_name(name) == "DaskRunner":
        from pipelines.job.dask_support import DaskRunner

        return DaskRunner(local_workers=dask_workers)
    return name
