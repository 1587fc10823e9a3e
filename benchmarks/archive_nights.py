"""One night over a growing archive: does a night cost the night's, whatever the archive's age? (fake engine)

    .venv/bin/python benchmarks/archive_nights.py [--days 8,64,365] [--rows-per-day 400] [--repeats 3]
        [--smoke] [--out results/archive_nights.json]

Archives (`scripts/synthetic_archive.py`): Hive-partitioned (`date=YYYY-MM-DD/part-0.parquet`) of each size in
`--days`, and one flat file of the largest size with a row group per day (pruned by its footer statistics). Each
output already holds a verdict partition per earlier night (synthetic files of resume keys), so the resume
lookup has a history to ignore. The night is the archive's last day (`--date`); each repeat judges it on a fresh
copy of that output, sizes interleaved, in this one process (Beam and the engine warmed up by a discarded run
first). Then the night is rerun on the last output, where nothing changed. Printed per archive: files listed,
files opened, row groups skipped, rows read, verdicts, median wall time and its ratio to the smallest archive's.
Targets: the largest Hive archive reads the rows the smallest does in <= 1.2x its wall time; the flat archive is
within 1.5x; a rerun of the finished night opens 0 input files.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from scripts.synthetic_archive import TENANTS, archive_days, write_flat_archive, write_hive_archive

TARGET_HIVE_RATIO = 1.2
TARGET_FLAT_RATIO = 1.5


def _past_verdicts(output: Path, days: list[str], rows_per_day: int) -> None:
    """One published verdict file per tenant and earlier night (resume keys only: what the lookup reads)."""
    for day in days:
        for tenant in TENANTS:
            folder = output / "verdicts" / f"tenant={tenant}" / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            keys = [f"past-{day}-{tenant}-{n}" for n in range(rows_per_day // len(TENANTS))]
            pq.write_table(pa.table({"resume_key": keys}), folder / "part-past-0.parquet")


def _night(inputs: str, output: Path, night: str, run_id: str) -> dict:
    from pipelines.job.moderate import run

    with common.Stopwatch() as sw:
        manifest = run(
            ["--engine", "fake", "--input", inputs, "--output", str(output), "--date", night, "--run-id", run_id]
        )
    if manifest.status != "succeeded":
        raise SystemExit(f"{run_id} did not succeed: {manifest.accounting_problems}")
    counts = manifest.input_counts
    return {
        "files_listed": counts["files_listed"],
        "files_opened": counts["files_opened"],
        "row_groups_skipped": counts["row_groups_skipped"],
        "rows_read": manifest.rows_read,
        "verdicts": manifest.totals.get("verdicts_written", 0),
        "wall_s": round(sw.wall, 3),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="8,64,365", help="comma-separated archive sizes in days")
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="nights per archive (median reported)")
    parser.add_argument("--smoke", action="store_true", help="tiny archives (2, 6 days of 20 rows, 1 repeat)")
    parser.add_argument("--workdir", help="where archives/outputs go (default: a temporary folder, removed after)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.days, args.rows_per_day, args.repeats = "2,6", 20, 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.quiet_logs()
    sizes = sorted(int(d) for d in args.days.split(",") if d.strip())
    result = common.header("archive_nights", vars(args))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsafe-archive-"))
    try:
        archives = {}  # name → (input pattern, night, output template)
        for size in sizes:
            days = archive_days(size)
            write_hive_archive(workdir / f"hive-{size}", days, args.rows_per_day)
            _past_verdicts(workdir / f"past-{size}", days[:-1], args.rows_per_day)
            archives[f"hive {size} days"] = (str(workdir / f"hive-{size}" / "date=*" / "*.parquet"), days[-1], size)
        days = archive_days(sizes[-1])
        write_flat_archive(workdir / "flat" / "archive.parquet", days, args.rows_per_day)
        archives[f"flat {sizes[-1]} days"] = (str(workdir / "flat" / "archive.parquet"), days[-1], sizes[-1])

        def fresh_output(name: str, repeat: int) -> Path:
            output = workdir / f"out-{name.replace(' ', '-')}-{repeat}"
            shutil.copytree(workdir / f"past-{archives[name][2]}", output)
            return output

        first = next(iter(archives))
        _night(archives[first][0], fresh_output(first, -1), archives[first][1], "warm-up")
        nights: dict[str, list[dict]] = {name: [] for name in archives}
        for repeat in range(args.repeats):
            for name, (pattern, night, _) in archives.items():
                nights[name].append(_night(pattern, fresh_output(name, repeat), night, f"night-{repeat}"))
        reruns = {}
        for name, (pattern, night, _) in archives.items():
            output = workdir / f"out-{name.replace(' ', '-')}-{args.repeats - 1}"
            reruns[name] = _night(pattern, output, night, "rerun")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    base_wall = statistics.median(r["wall_s"] for r in nights[first])
    for name, runs in nights.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        rows.append({**runs[-1], "archive": name, "wall_s": wall, "walls": [r["wall_s"] for r in runs]})
        rows[-1]["ratio"] = round(wall / base_wall, 3)
        rows[-1]["rerun_files_opened"] = reruns[name]["files_opened"]
        rows[-1]["rerun_wall_s"] = reruns[name]["wall_s"]
    result["nights"] = rows
    hive = [r for r in rows if r["archive"].startswith("hive")]
    flat = next(r for r in rows if r["archive"].startswith("flat"))
    result["hive_same_rows_met"] = len({r["rows_read"] for r in rows}) == 1
    result["hive_ratio_met"] = hive[-1]["ratio"] <= TARGET_HIVE_RATIO
    result["flat_ratio_met"] = flat["ratio"] <= TARGET_FLAT_RATIO
    result["rerun_opens_nothing_met"] = all(r["rerun_files_opened"] == 0 for r in rows)
    result["load_end"] = common.load()
    header = ["archive", "files listed", "files opened", "row groups skipped", "rows read", "verdicts"]
    header += ["wall s (median)", "× smallest", "rerun: files opened", "rerun wall s"]
    table = [
        [r[k] for k in ("archive", "files_listed", "files_opened", "row_groups_skipped", "rows_read", "verdicts")]
        + [r[k] for k in ("wall_s", "ratio", "rerun_files_opened", "rerun_wall_s")]
        for r in rows
    ]
    print(common.markdown_table(header, table))
    verdict = {True: "met", False: "NOT met"}
    print(
        f"\n{hive[-1]['archive']}: {hive[-1]['ratio']}x the {hive[0]['archive']} night (target <= "
        f"{TARGET_HIVE_RATIO}x, {verdict[result['hive_ratio_met']]}); {flat['archive']}: {flat['ratio']}x (target <= "
        f"{TARGET_FLAT_RATIO}x, {verdict[result['flat_ratio_met']]}); same rows read everywhere: "
        f"{verdict[result['hive_same_rows_met']]}; reruns open no file: {verdict[result['rerun_opens_nothing_met']]}"
    )
    print(f"load (1 min) {result['load_start'][0]} → {result['load_end'][0]}")
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
