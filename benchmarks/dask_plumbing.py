"""Plumbing on Dask: the whole job on the FAKE engine, in-process vs `--runner DaskRunner` with 1 and 2 workers.

    .venv/bin/python benchmarks/dask_plumbing.py [--rows 4000] [--files 8] [--seconds-per-call 0,0.05] [--out F]

The same input (`--rows` synthetic conversations split into `--files` Parquet files: Dask gives each file its
own partition) is run on each runner, once per `--seconds-per-call` value: 0 is pure plumbing (CPU-bound), a
value > 0 makes each engine call wait that long without using the CPU, as a GPU call does for the CPU that feeds
it. Reported: wall time (a Dask run includes starting and stopping its local cluster, measured on its own as
`cluster_start_s`), rows/s, and the 1-minute load.
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds-per-call", default="0,0.05", help="fake engine sleep per call, comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="tiny run (400 rows, 0 s per call)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.seconds_per_call = 400, "0"
    common.quiet_logs()
    from pipelines.moderate import run

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
    shutil.rmtree(workdir, ignore_errors=True)
    result["runs"] = runs
    header = ["runner", "s/call", "rows", "units", "wall s", "rows/s", "load (1m)"]
    table = [
        [r["runner"], r["seconds_per_call"], r["rows"], r["units"], r["wall_s"], r["rows_per_s"], r["load_end"][0]]
        for r in runs
    ]
    print(common.markdown_table(header, table))
    print(f"\ncluster start+stop (s): {result['cluster_start_s']}")
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
