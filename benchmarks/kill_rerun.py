"""Kill -9 a run at random points, rerun the same command, repeat: are verdicts and dead letters unique, are the
books balanced, are the killed runs marked abandoned?

    python -m benchmarks.kill_rerun --rounds 5 [--seed 0] [--engine fake|vllm]

Each round: a fresh output, a run killed (the whole process group, engine included) after a random delay, a
second run of the same command killed likewise, then a run to completion. Prints one line per round and exits
non-zero when any round finds a duplicate, an imbalance or a killed run not marked abandoned.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def _job(out: Path, run_id: str, engine: str) -> list[str]:
    argv = [sys.executable, "-m", "pipelines.moderate", "--input", str(REPO / "samples" / "logs" / "*.parquet"),
            "--output", str(out), "--run-id", run_id, "--batch-size", "2", "--flush-rows", "2"]  # fmt: skip
    if engine == "fake":
        return [*argv, "--engine", "fake", "--fake-seconds-per-call", "0.3"]
    return [*argv, "--max-tokens", "24"]


def _column(out: Path, pattern: str, column: str) -> list:
    return [v for p in sorted(out.glob(pattern)) for v in pq.read_table(p, columns=[column]).column(column).to_pylist()]


def one_round(out: Path, rng: random.Random, engine: str, max_delay: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    delays = []
    for attempt in range(2):
        delay = rng.uniform(0.5, max_delay)
        proc = subprocess.Popen(_job(out, f"killed-{attempt}", engine), cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        delays.append(f"{delay:.1f}s" + (" (finished first)" if finished else ""))
    published_by_killed = len(_column(out, "verdicts/*/*/*.parquet", "resume_key"))
    done = subprocess.run(_job(out, "final", engine), cwd=REPO, env=env, capture_output=True, timeout=1800)
    manifest = json.loads((out / "_runs" / "final.json").read_text())
    verdicts = _column(out, "verdicts/*/*/*.parquet", "resume_key")
    dead = _column(out, "errors/*/*.parquet", "dead_letter_key")
    statuses = [json.loads((out / "_runs" / f"killed-{i}.json").read_text())["status"] for i in range(2)
                if (out / "_runs" / f"killed-{i}.json").exists()]  # fmt: skip
    return {
        "kills_after": delays,
        "verdicts_published_by_killed_runs": published_by_killed,
        "exit": done.returncode,
        "balanced": manifest["status"] == "succeeded" and not manifest["accounting_problems"],
        "verdicts": len(verdicts),
        "duplicate_verdicts": len(verdicts) - len(set(verdicts)),
        "dead_letters": len(dead),
        "duplicate_dead_letters": len(dead) - len(set(dead)),
        "killed_statuses": statuses,
        "ok": done.returncode == 0
        and len(verdicts) == len(set(verdicts))
        and len(dead) == len(set(dead))
        and all(s in ("abandoned", "succeeded") for s in statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="fake", choices=["fake", "vllm"])
    parser.add_argument("--max-delay", type=float, default=8.0, help="latest kill, seconds after start")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_round(Path(tmp) / "out", rng, args.engine, args.max_delay)
        results.append(result)
        print(f"round {n + 1}: {json.dumps(result)}", flush=True)
    bad = [n + 1 for n, r in enumerate(results) if not r["ok"]]
    print(f"{args.rounds - len(bad)}/{args.rounds} rounds clean" + (f"; failed: {bad}" if bad else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
