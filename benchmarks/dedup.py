"""De-duplication and the verdict cache, on the real engine: a log with 30% duplicate units vs the same log unique.

    .venv/bin/python benchmarks/dedup.py [--n 64] [--duplicate-fraction 0.3] [--max-tokens 64] [--out dedup.json]

`generate_conversations(n, seed, duplicate_fraction)` replays earlier conversations; here each replay gets a
conversation id of its own (the reader dead-letters a repeated id) and every message of the log is tagged with its
original's number, so the replays' units, and only they, are content-identical (same content key). The "unique"
log is the same rows with every conversation tagged with its own number: same size, same shape, no duplicates.
The tag opens every message, so a replay in the unique log shares no prefix with its original beyond the policy.
One engine is started (timed on its own) and shared by every job run, each on an emptied prefix cache (the first two
alternate `--repeat` times and the fastest of each counts: other work shares the machine):
  unique      the unique log;
  duplicates  the log with duplicates: identical units are judged once and the verdict fanned out;
  cache-fill  the log with duplicates again with `--verdict-cache` (empty): judges and fills the cache;
  cache-hit   the same log into a new output with the same cache: every unit comes from the cache.
Reported: wall seconds, time ratio unique/duplicates (target >= 1.4), whether every duplicate's verdict is identical
to its original's, `units_deduplicated` (rows with `deduplicated` true, as the judge step counts them) and
`units_from_cache`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_RATIO = 1.4
_JUDGED = ("verdict", "outcome", "verdict_source", "p_unsafe", "raw_output", "finish_reason", "completion_tokens")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="conversations per log")
    parser.add_argument("--duplicate-fraction", type=float, default=0.3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--verdict-mode", default="free")
    parser.add_argument("--seed", type=int, default=16, help="16: 30%% of the units are duplicates at --n 64")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of unique/duplicates; fastest counts")
    parser.add_argument("--engine", default="vllm", choices=["vllm", "fake"], help="fake: plumbing check only")
    parser.add_argument(
        "--no-cache-runs", action="store_true", help="skip the cache-fill and cache-hit runs (large --n)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run (6 conversations, 4 tokens)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.max_tokens, args.repeat = 6, 4, 1
    return args


def make_logs(n: int, seed: int, duplicate_fraction: float) -> tuple[list[dict], list[dict], int]:
    """(log with duplicates, the same log unique, number of replayed conversations)."""
    rows = common.synthetic_rows(n, seed, duplicate_fraction)
    original: dict[str, int] = {}
    with_dups, unique = [], []
    for position, row in enumerate(rows):
        cid = row["conversation_id"]
        replay = cid in original
        number = original.setdefault(cid, len(original))
        new_id = f"{cid}-replay-{position}" if replay else cid
        with_dups.append(_tagged(row, new_id, number))
        unique.append(_tagged(row, new_id, position + n))  # its own tag, clear of every original's
    return with_dups, unique, len(rows) - len(original)


def _tagged(row: dict, conversation_id: str, tag: int) -> dict:
    messages = [
        m if m["role"] == "system" else {"role": m["role"], "content": f"[#{tag}] {m['content']}"}
        for m in row["messages"]
    ]
    return {**row, "conversation_id": conversation_id, "messages": messages}


def duplicate_check(rows: list[dict]) -> dict:
    """Rows grouped by content key: do all rows of a content carry the same judgement?"""
    by_content: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_content[row["content_key"]].append(row)
    shared = [group for group in by_content.values() if len(group) > 1]
    identical = sum(len({tuple(r[c] for c in _JUDGED) for r in group}) == 1 for group in shared)
    return {
        "contents_with_duplicates": len(shared),
        "duplicate_rows": sum(len(group) - 1 for group in shared),
        "contents_with_identical_verdicts": identical,
        "all_identical": identical == len(shared),
        "units_deduplicated": sum(bool(r["deduplicated"]) for r in rows),
        "units_judged": sum(not r["deduplicated"] and not r["from_cache"] for r in rows),  # engine work
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.quiet_logs()
    from pipelines.job.moderate import run

    result = common.header("dedup", vars(args))
    workdir = Path(tempfile.mkdtemp(prefix="rsafe-dedup-"))
    runs: dict[str, dict] = {}
    try:
        with_dups, unique, replays = make_logs(args.n, args.seed, args.duplicate_fraction)
        logs = {
            "duplicates": common.write_log(with_dups, workdir / "dups" / "logs.parquet"),
            "unique": common.write_log(unique, workdir / "unique" / "logs.parquet"),
        }
        if args.engine == "fake":
            from transforms.engines.fake_engine import FakeEngineSpec

            spec, start_s = FakeEngineSpec(), 0.0
            holder = None
        else:
            from transforms.engines.vllm_engine import VllmEngineSpec

            spec = VllmEngineSpec()
            holder, start_s = common.start_engine(spec)
            holder.engine.complete(["warm-up"], _sampling(4), [4])  # first-call set-up
        cache = workdir / "verdict-cache"
        plan = [("unique", logs["unique"], []), ("duplicates", logs["duplicates"], [])] * args.repeat
        if not args.no_cache_runs:
            plan += [
                ("cache-fill", logs["duplicates"], ["--verdict-cache", str(cache)]),
                ("cache-hit", logs["duplicates"], ["--verdict-cache", str(cache)]),
            ]
        cached_same = None
        for attempt, (name, log, extra) in enumerate(plan):
            if holder is not None:
                common.reset_prefix_cache(holder.engine)
            output = workdir / f"out-{name}-{attempt}"
            argv = ["--input", str(log), "--output", str(output), "--verdict-mode", args.verdict_mode]
            argv += ["--max-tokens", str(args.max_tokens), "--engine", args.engine, *extra]
            load = common.load()
            cpu, started = common.tree_cpu_seconds(), time.perf_counter()
            manifest = run(argv, engine_spec=spec)
            wall = time.perf_counter() - started
            rows = common.verdict_rows(output)
            figures = {
                "wall_s": round(wall, 2),
                "cpu_s": round(common.tree_cpu_seconds() - cpu, 2),
                "units": manifest.totals.get("units_made", 0),
                "verdicts": len(rows),
                "units_from_cache": manifest.totals.get("units_from_cache", 0),
                "load": load,
                **duplicate_check(rows),
            }
            attempts = [*runs.get(name, {}).get("attempts", []), {k: figures[k] for k in ("wall_s", "cpu_s", "load")}]
            if name not in runs or figures["wall_s"] < runs[name]["wall_s"]:  # the fastest attempt counts
                runs[name] = figures
            runs[name]["attempts"] = attempts
            if name == "duplicates":
                dup_rows = {r["resume_key"]: r for r in rows}
            if name == "cache-hit":
                cached_same = all(
                    all(r[c] == dup_rows[r["resume_key"]][c] for c in _JUDGED) for r in rows if r["from_cache"]
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = runs["unique"]["wall_s"] / runs["duplicates"]["wall_s"]
    result.update(
        engine_start_s=round(start_s, 2),
        replayed_conversations=replays,
        runs=runs,
        time_ratio_unique_over_duplicates=round(ratio, 3),
        cpu_ratio_unique_over_duplicates=round(runs["unique"]["cpu_s"] / runs["duplicates"]["cpu_s"], 3),
        judged_ratio_unique_over_duplicates=round(
            runs["unique"]["units_judged"] / runs["duplicates"]["units_judged"], 3
        ),
        duplicate_unit_share=round(runs["duplicates"]["units_deduplicated"] / max(runs["duplicates"]["units"], 1), 3),
        duplicates_identical=runs["duplicates"]["all_identical"],
        units_deduplicated=runs["duplicates"]["units_deduplicated"],
        units_from_cache=runs["cache-hit"]["units_from_cache"] if "cache-hit" in runs else None,
        cache_hit_verdicts_match_judged=cached_same,
        time_ratio_duplicates_over_cache_hit=(
            round(runs["duplicates"]["wall_s"] / runs["cache-hit"]["wall_s"], 3) if "cache-hit" in runs else None
        ),
        target_ratio=TARGET_RATIO,
        load_end=common.load(),
    )
    result["target_met"] = ratio >= TARGET_RATIO
    header = ["run", "units", "judged", "wall s", "CPU s", "deduplicated", "from cache", "dups identical", "load (1m)"]
    table = [
        [name, r["units"], r["units_judged"], r["wall_s"], r["cpu_s"], r["units_deduplicated"], r["units_from_cache"],
         r["all_identical"], r["load"][0]]
        for name, r in runs.items()
    ]  # fmt: skip
    print(common.markdown_table(header, table))
    print(
        f"\nunique/duplicates time ratio: {result['time_ratio_unique_over_duplicates']} (target >= {TARGET_RATIO}); "
        f"{result['duplicate_unit_share']:.0%} of units deduplicated; engine start {result['engine_start_s']} s"
    )
    common.write_json(args.out, result)
    return result


def _sampling(max_tokens: int):
    from transforms.engines.protocol import SamplingSettings

    return SamplingSettings(max_tokens=max_tokens)


if __name__ == "__main__":
    main()
