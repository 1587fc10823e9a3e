"""Plumbing on Dask: the whole job on the FAKE engine, in-process vs `--runner DaskRunner` with 1 and 2 workers.

    .venv/bin/python benchmarks/dask_plumbing.py [--rows 4000] [--files 8] [--seconds-per-call 0,0.05] [--out F]

The same input (`--rows` synthetic conversations split into `--files` Parquet files: Dask gives each file its
own partition) is run on each runner, once per `--seconds-per-call` value: 0 is pure plumbing (CPU-bound), a
value > 0 makes each engine call wait that long without using the CPU, as a GPU call does for the CPU that feeds
it. Reported: wall time (a Dask run includes starting and stopping its local cluster, measured on its own as
`cluster_start_s`), rows/s, and the 1-minute load.

`--timeline` adds one more 2-worker run on a cluster this script starts itself (passed to the job with
`--dask_client_address`), with the scheduler's task stream recorded: per worker, the tasks it ran, its busy
seconds, and when its first and last task started and ended (seconds from the run's start).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

RUNNERS = {"in-process": [], "dask-1": ["--runner", "DaskRunner", "--dask-workers", "1"]}
RUNNERS["dask-2"] = ["--runner", "DaskRunner", "--dask-workers", "2"]


def _cluster_start_s(workers: int) -> float:
    from distributed import LocalCluster

    started = time.monotonic()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    cluster.close()
    return round(time.monotonic() - started, 2)


def _timeline_run(argv: list[str], workers: int = 2) -> dict:
    """The job on a cluster of our own, with the scheduler's task stream: who ran what, and when."""
    from distributed import Client

    from pipelines.job.dask_support import local_cluster
    from pipelines.job.moderate import run

    cluster = local_cluster(workers)
    client = Client(cluster)
    try:
        client.get_task_stream(count=0)  # installs the scheduler's task-stream plugin before the run
        started = time.time()
        with common.Stopwatch() as sw:
            manifest = run([*argv, "--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
        assert manifest.status == "succeeded", manifest.accounting_problems
        stream = client.get_task_stream(start=started)
    finally:
        client.close()
        cluster.close()
    per_worker: dict[str, dict] = {}
    for task in stream:
        spans = [s for s in task.get("startstops", ()) if s.get("action") == "compute"]
        if not spans:
            continue
        w = per_worker.setdefault(task["worker"], {"tasks": 0, "busy_s": 0.0, "first_start": 1e18, "last_stop": 0.0})
        w["tasks"] += 1
        for span in spans:
            w["busy_s"] += span["stop"] - span["start"]
            w["first_start"] = min(w["first_start"], span["start"] - started)
            w["last_stop"] = max(w["last_stop"], span["stop"] - started)
    for w in per_worker.values():
        w.update({k: round(v, 2) for k, v in w.items() if isinstance(v, float)})
    return {"wall_s": round(sw.wall, 2), "workers": per_worker, "tasks": len(stream)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds-per-call", default="0,0.05", help="fake engine sleep per call, comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny run (400 rows, 0 s per call)")
    parser.add_argument("--timeline", action="store_true", help="also a 2-worker run with its task stream")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.seconds_per_call = 400, "0"
    common.quiet_logs()
    from pipelines.job.moderate import run

    result = common.header("dask_plumbing", vars(args))
    result["cluster_start_s"] = {n: _cluster_start_s(n) for n in (1, 2)}
    workdir = Path(tempfile.mkdtemp(prefix="dask-plumbing-"))
    rows = common.synthetic_rows(args.rows)
    per_file = -(-len(rows) // args.files)
    for i in range(args.files):
        common.write_log(rows[i * per_file : (i + 1) * per_file], workdir / "in" / f"logs-{i}.parquet")
    runs = []
    for seconds in [float(s) for s in args.seconds_per_call.split(",")]:
        for name, runner_args in RUNNERS.items():
            out = workdir / f"out-{name}-{seconds}"
            argv = ["--engine", "fake", "--input", str(workdir / "in" / "*.parquet"), "--output", str(out)]
            argv += ["--batch-size", str(args.batch_size), "--fake-seconds-per-call", str(seconds), *runner_args]
            with common.Stopwatch() as sw:
                manifest = run(argv)
            assert manifest.status == "succeeded", manifest.accounting_problems
            runs.append(
                {
                    "runner": name,
                    "seconds_per_call": seconds,
                    "rows": args.rows,
                    "units": manifest.totals.get("units_made", 0),
                    "engine_batches": -(-manifest.totals.get("units_made", 0) // args.batch_size),
                    "wall_s": round(sw.wall, 2),
                    "rows_per_s": round(args.rows / sw.wall, 1),
                    "load_end": common.load(),
                }
            )
    if args.timeline:
        seconds = max(float(s) for s in args.seconds_per_call.split(","))
        argv = ["--engine", "fake", "--input", str(workdir / "in" / "*.parquet"), "--output", str(workdir / "tl")]
        argv += ["--batch-size", str(args.batch_size), "--fake-seconds-per-call", str(seconds)]
        result["timeline"] = {"seconds_per_call": seconds, **_timeline_run(argv)}
    shutil.rmtree(workdir, ignore_errors=True)
    result["runs"] = runs
    header = ["runner", "s/call", "rows", "units", "wall s", "rows/s", "load (1m)"]
    table = [
        [r["runner"], r["seconds_per_call"], r["rows"], r["units"], r["wall_s"], r["rows_per_s"], r["load_end"][0]]
        for r in runs
    ]
    print(common.markdown_table(header, table))
    print(f"\ncluster start+stop (s): {result['cluster_start_s']}")
    if args.timeline:
        print(f"\ntimeline (2 workers, task stream): {result['timeline']}")
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
