"""Prefix reuse: tenant-grouped vs shuffled prompt order with vLLM's prefix cache, and the cache off.

    .venv/bin/python benchmarks/prefix_reuse.py [--n 64] [--max-tokens 8] [--batch-size 64] [--out results/prefix.json]

The four shipped tenants' policies are several hundred tokens each and open every prompt, so a tenant's prompts
share a long prefix. N synthetic conversations → the pipeline's unique prompts, sent to the raw engine in engine
calls of `--batch-size` prompts, as the job's judge step sends them:
  grouped    prompts ordered by policy version (what the job does), prefix caching on;
  shuffled   the same prompts in random order, prefix caching on;
  no-cache   shuffled, prefix caching off.
Each engine (caching on / off) runs in its own subprocess, one after the other. Reported per order: wall seconds,
prompt tokens, tokens served from the cache (`RequestOutput.num_cached_tokens`) and prefill tokens computed (prompt
− cached). Target: grouped >= 1.5x faster than no-cache. Generation is kept short (`--max-tokens`) so prefill,
which the cache saves, is what is measured. The script also runs the job on the fake engine with a recording
engine to confirm its default path sends prompts grouped by policy version (each call in policy order: a full call
holds one policy, the run's tail spans policies in order); `--pipeline-only` runs just that check.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_SPEEDUP = 1.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="conversations")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per engine call of the raw-engine runs")
    parser.add_argument("--pipeline-only", action="store_true", help="only check the job's engine calls (fake engine)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of the cached orders; fastest counts")
    parser.add_argument("--smoke", action="store_true", help="tiny run (4 conversations, 2 tokens)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", choices=["cache-on", "cache-off"], help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.max_tokens, args.repeat = 4, 2, 1
    return args


def _orders(units, seed: int) -> dict[str, list]:
    grouped = sorted(units, key=lambda u: (u.policy_version, u.content_key))  # the judge DoFn's order
    shuffled = list(units)
    random.Random(seed).shuffle(shuffled)
    return {"grouped": grouped, "shuffled": shuffled}


def child(args: argparse.Namespace) -> None:
    """One engine (prefix caching on or off): time the orders, print one JSON line."""
    common.quiet_logs()
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from transforms.engines.embedded_model import EMBEDDED_MODEL_NAME
    from transforms.engines.vllm_engine import VllmEngineSpec

    caching = args.child == "cache-on"
    spec = VllmEngineSpec(enable_prefix_caching=caching)
    started = time.perf_counter()
    engine = spec.load()
    start_s = time.perf_counter() - started
    llm = engine._llm
    units = common.unique_by_content(common.rendered_units(args.log, spec.load_token_counter(), EMBEDDED_MODEL_NAME))
    orders = _orders(units, args.seed)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    llm.generate([TokensPrompt(prompt_token_ids=engine._prompt_ids(u.prompt, "")) for u in units[:2]], params)
    figures = {"engine_start_s": round(start_s, 2), "units": len(units), "runs": {}}
    names = ["grouped", "shuffled"] if caching else ["shuffled"]
    for _ in range(args.repeat if caching else 1):  # alternate the orders; the fastest of each counts
        for name in names:
            if caching:
                llm.reset_prefix_cache()
            ordered = orders[name]
            load = common.load()
            cpu, started = common.tree_cpu_seconds(), time.perf_counter()
            prompt_tokens = cached = 0
            for first in range(0, len(ordered), args.batch_size):
                batch = [engine._prompt_ids(u.prompt, "") for u in ordered[first : first + args.batch_size]]
                outputs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in batch], params, use_tqdm=False)
                prompt_tokens += sum(len(i) for i in batch)
                cached += sum(o.num_cached_tokens or 0 for o in outputs)
            run = {
                "wall_s": round(time.perf_counter() - started, 2),
                "cpu_s": round(common.tree_cpu_seconds() - cpu, 2),
                "prompt_tokens": prompt_tokens,
                "cached_tokens": cached,
                "prefill_tokens": prompt_tokens - cached,
                "load": load,
            }
            key = name if caching else "no-cache"
            best = figures["runs"].setdefault(key, {**run, "attempts": []})
            best["attempts"].append({k: run[k] for k in ("wall_s", "cpu_s", "load")})
            best["wall_s"] = min(best["wall_s"], run["wall_s"])
            best["cpu_s"] = min(best["cpu_s"], run["cpu_s"])
    common.emit_result(figures)


def pipeline_batches(log: Path) -> dict:
    """Run the job on the fake engine; how many of its engine calls held prompts of a single policy version."""
    from pipelines.job.moderate import run
    from transforms.engines.fake_engine import count_words
    from transforms.judging.judge_dofn import acquire_engine

    spec = common.recording_fake_engine_spec()
    holder = acquire_engine(spec)  # held, so the job's DoFns use (and record into) this very engine
    policy_of = {u.prompt: u.policy_version for u in common.rendered_units(log, count_words, spec.model_name)}
    out = Path(tempfile.mkdtemp(prefix="rsafe-prefix-job-"))
    try:
        run(["--input", str(log), "--output", str(out / "out"), "--verdict-mode", "free"], engine_spec=spec)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    calls = [[policy_of[p] for p in call] for call in holder.engine.calls]
    return {
        "engine_calls": len(calls),
        "calls_with_one_policy_version": sum(len(set(c)) == 1 for c in calls),
        "calls_in_policy_order": sum(c == sorted(c) for c in calls),  # each version in one contiguous run
        "policy_versions_per_call": [len(set(c)) for c in calls],
        "prompts": sum(len(c) for c in calls),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    common.quiet_logs()
    result = common.header("prefix_reuse", {k: v for k, v in vars(args).items() if k not in ("child", "log")})
    workdir = Path(tempfile.mkdtemp(prefix="rsafe-prefix-"))
    try:
        log = common.write_log(common.synthetic_rows(args.n, args.seed), workdir / "logs.parquet")
        result["pipeline"] = pipeline = pipeline_batches(log)
        if args.pipeline_only:
            print(_pipeline_line(pipeline))
            common.write_json(args.out, result)
            return result
        engines = {}
        for mode in ("cache-on", "cache-off"):
            command = [sys.executable, __file__, "--child", mode, "--log", str(log), "--n", str(args.n)]
            command += ["--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
            command += ["--seed", str(args.seed), "--repeat", str(args.repeat)]
            done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-5000:])
                raise SystemExit(f"the {mode} engine run failed (exit {done.returncode})")
            engines[mode] = common.parse_result(done.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    runs = {**engines["cache-on"]["runs"], **engines["cache-off"]["runs"]}
    result.update(
        units=engines["cache-on"]["units"],
        engine_start_s={mode: e["engine_start_s"] for mode, e in engines.items()},
        runs=runs,
        speedup_grouped_vs_no_cache=round(runs["no-cache"]["wall_s"] / runs["grouped"]["wall_s"], 3),
        speedup_grouped_vs_shuffled=round(runs["shuffled"]["wall_s"] / runs["grouped"]["wall_s"], 3),
        cpu_speedup_grouped_vs_no_cache=round(runs["no-cache"]["cpu_s"] / runs["grouped"]["cpu_s"], 3),
        cpu_speedup_grouped_vs_shuffled=round(runs["shuffled"]["cpu_s"] / runs["grouped"]["cpu_s"], 3),
        target_speedup=TARGET_SPEEDUP,
        load_end=common.load(),
    )
    result["target_met"] = result["speedup_grouped_vs_no_cache"] >= TARGET_SPEEDUP
    pipeline = result["pipeline"]
    result["pipeline_is_grouped"] = pipeline["calls_in_policy_order"] == pipeline["engine_calls"]
    header = ["order", "wall s", "CPU s", "prompt tokens", "cached tokens", "prefill computed", "load (1m)"]
    table = [
        [name, r["wall_s"], r["cpu_s"], r["prompt_tokens"], r["cached_tokens"], r["prefill_tokens"], r["load"][0]]
        for name, r in runs.items()
    ]
    print(common.markdown_table(header, table))
    print(
        f"\ngrouped vs no-cache: {result['speedup_grouped_vs_no_cache']}x (target >= {TARGET_SPEEDUP}x); "
        f"grouped vs shuffled (both cached): {result['speedup_grouped_vs_shuffled']}x; {result['units']} prompts; "
        f"in CPU seconds: {result['cpu_speedup_grouped_vs_no_cache']}x and {result['cpu_speedup_grouped_vs_shuffled']}x"
    )
    print(_pipeline_line(pipeline))
    common.write_json(args.out, result)
    return result


def _pipeline_line(pipeline: dict) -> str:
    return (
        f"job on the fake engine: {pipeline['calls_in_policy_order']}/{pipeline['engine_calls']} engine calls in "
        f"policy order; policy versions per call: {pipeline['policy_versions_per_call']}"
    )


if __name__ == "__main__":
    main()
