"""Plumbing at scale: the whole job on the FAKE engine (no model), 1k / 10k / 100k input rows.

    .venv/bin/python benchmarks/plumbing_scale.py [--sizes 1000,10000,100000] [--out results/plumbing.json]

Each size runs in a fresh subprocess (so peak RSS, VmHWM, is that run's alone): Parquet in → Hive partitions out on
the in-process FnApiRunner, exactly as `pipelines.job.moderate.run` does with `--engine fake`. Reported: wall time,
input rows/s, CPU seconds (user+sys, all threads; steadier than wall time when other work shares the machine), peak
RSS, and the machine's load. Targets: >= 5,000 rows/s; peak RSS within ±15% from the 10k to the 100k run.
`--profile` also writes a cProfile of each child's pipeline run (`--workdir`/profile-<n>.pstats) and prints its top.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_ROWS_PER_S = 5000.0
TARGET_MEMORY_DRIFT = 0.15


def child(args: argparse.Namespace) -> None:
    """One run of the job on one input file; prints one JSON line with the figures."""
    common.quiet_logs()
    from pipelines.job.moderate import run

    if args.stub_prompts:
        _stub_prompts()

    source = Path(args.workdir) / f"in-{args.child}" / "logs.parquet"
    output = Path(args.workdir) / f"out-{args.child}"
    shutil.rmtree(output, ignore_errors=True)
    argv = ["--input", str(source), "--output", str(output), "--engine", "fake", "--batch-size", str(args.batch_size)]
    argv += ["--verdict-mode", args.verdict_mode, *shlex.split(args.pipeline_args)]
    rss_before = common.peak_rss_mb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with common.Stopwatch() as sw:
        manifest = run(argv)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # SDK worker processes (multi_processing mode)
    workers_cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    cpu = sw.cpu + workers_cpu
    if profiler is not None:
        profiler.disable()
        stats_path = Path(args.workdir) / f"profile-{args.child}.pstats"
        profiler.dump_stats(stats_path)
        import pstats

        pstats.Stats(str(stats_path), stream=sys.stderr).sort_stats("tottime").print_stats(25)
    common.emit_result(
        {
            "rows": args.child,
            "rows_read": manifest.rows_read,
            "units": manifest.totals.get("units_made", 0),
            "verdicts": manifest.totals.get("verdicts_written", 0),
            "wall_s": round(sw.wall, 3),
            "cpu_s": round(cpu, 3),
            "workers_cpu_s": round(workers_cpu, 3),
            "rows_per_s": round(args.child / sw.wall, 1),
            "rows_per_cpu_s": round(args.child / cpu, 1),
            "peak_rss_mb": common.peak_rss_mb(),
            "peak_rss_largest_worker_mb": round(children.ru_maxrss / 1024, 1),
            "peak_rss_before_run_mb": rss_before,
            "load_end": common.load(),
        }
    )


def _stub_prompts() -> None:
    """Diagnostic: each unit's rendered prompt is replaced by a short stub once its keys are computed."""
    import dataclasses

    import transforms.prompts.units

    make_units = transforms.prompts.units.make_units

    def stubbed(*args, **kwargs):
        stub = "<BEGIN CONVERSATION>stub<END CONVERSATION>"
        return [dataclasses.replace(u, prompt=stub) for u in make_units(*args, **kwargs)]

    transforms.prompts.units.make_units = stubbed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated input row counts")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (300,1200): a quick check that it runs")
    parser.add_argument("--batch-size", type=int, default=256, help="units per engine call (the job's default)")
    parser.add_argument(
        "--row-group-rows",
        type=int,
        help="rows per Parquet row group of the input (default: pyarrow's, i.e. one row group per file here)",
    )
    parser.add_argument("--verdict-mode", default="auto")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", help="where inputs/outputs go (default: a temporary folder, removed after)")
    parser.add_argument(
        "--pipeline-args",
        default="",
        help="more job options, e.g. '--direct_running_mode=multi_processing --direct_num_workers=2'",
    )
    parser.add_argument(
        "--stub-prompts",
        action="store_true",
        help="diagnostic: units carry a short stub instead of their rendered prompt (what the prompt costs)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each run (slower; not for the figures)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes = "300,1200"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return {}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result = common.header("plumbing_scale", {k: v for k, v in vars(args).items() if k != "child"})
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsafe-plumbing-"))
    runs = []
    try:
        for size in sizes:
            log = workdir / f"in-{size}" / "logs.parquet"
            common.write_log(common.synthetic_rows(size, args.seed), log, row_group_rows=args.row_group_rows)
            command = [sys.executable, __file__, "--child", str(size), "--workdir", str(workdir)]
            command += ["--batch-size", str(args.batch_size), "--verdict-mode", args.verdict_mode]
            command += ["--profile"] if args.profile else []
            command += ["--stub-prompts"] if args.stub_prompts else []
            command += [f"--pipeline-args={args.pipeline_args}"] if args.pipeline_args else []
            load_before = common.load()
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"run of {size} rows failed (exit {done.returncode})")
            if args.profile:
                sys.stderr.write(done.stderr)
            figures = common.parse_result(done.stdout)
            figures["load_start"] = load_before
            runs.append(figures)
            shutil.rmtree(workdir / f"out-{size}", ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result["runs"] = runs
    largest = max(runs, key=lambda r: r["rows"])
    result["rows_per_s"] = largest["rows_per_s"]
    result["rows_per_s_target"] = TARGET_ROWS_PER_S
    result["rows_per_s_met"] = all(r["rows_per_s"] >= TARGET_ROWS_PER_S for r in runs if r["rows"] >= 10_000) or (
        largest["rows_per_s"] >= TARGET_ROWS_PER_S
    )
    by_size = {r["rows"]: r for r in runs}
    low, high = (10_000, 100_000) if {10_000, 100_000} <= by_size.keys() else (sizes[0], sizes[-1])
    if len(by_size) >= 2:
        drift = by_size[high]["peak_rss_mb"] / by_size[low]["peak_rss_mb"] - 1
        result["memory_drift"] = {"from_rows": low, "to_rows": high, "drift": round(drift, 3)}
        result["memory_flat_met"] = abs(drift) <= TARGET_MEMORY_DRIFT
    result["load_end"] = common.load()
    header = ["rows", "units", "wall s", "rows/s", "CPU s", "rows/CPU-s", "peak RSS MiB", "load (1m) start→end"]
    table = [
        [
            r["rows"],
            r["units"],
            r["wall_s"],
            r["rows_per_s"],
            r["cpu_s"],
            r["rows_per_cpu_s"],
            r["peak_rss_mb"],
            f"{r['load_start'][0]}→{r['load_end'][0]}",
        ]
        for r in runs
    ]
    print(common.markdown_table(header, table))
    if "memory_drift" in result:
        d = result["memory_drift"]
        print(f"\npeak RSS {d['from_rows']}→{d['to_rows']} rows: {d['drift']:+.0%} (target ±15%)")
    print(f"rows/s at {largest['rows']} rows: {largest['rows_per_s']:,.0f} (target >= {TARGET_ROWS_PER_S:,.0f})")
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
