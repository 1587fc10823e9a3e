"""How long the audit report takes on a large output: synthetic verdict rows over many nights and tenants.

    python -m benchmarks.report_speed --rows 100000 [--nights 30] [--tenants 5]

Writes the rows as the job's partitioned Parquet (one file per tenant and night) into a temporary folder, then
times `pipelines.audit.report.build_report` + the HTML rendering, and prints the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.audit.report import build_report, render_html
from transforms.io.write_partitions import VERDICT_SCHEMA


def write_output(root: Path, rows: int, nights: int, tenants: int, seed: int = 0) -> None:
    """`rows` verdict rows spread over `tenants` × `nights` partitions."""
    rng = random.Random(seed)
    per_file = rows // (nights * tenants)
    start = dt.date(2026, 10, 1)
    for t in range(tenants):
        for n in range(nights):
            night = start + dt.timedelta(days=n)
            at = dt.datetime.combine(night, dt.time(2), dt.UTC)
            p = [rng.random() for _ in range(per_file)]
            verdict = ["unsafe" if x > 0.8 else "review" if x > 0.7 else "safe" for x in p]
            columns = {
                "conversation_id": [f"c{t}-{n}-{i}" for i in range(per_file)],
                "tenant_id": [f"tenant-{t}"] * per_file,
                "unit": ["prompt"] * per_file,
                "turn_index": [0] * per_file,
                "verdict": verdict,
                "outcome": [v if v != "review" else "safe" for v in verdict],
                "p_unsafe": p,
                "categories": [["U1"] if v == "unsafe" else [] for v in verdict],
                "reasoning": ["The user asks about something; checking the categories."] * per_file,
                "prompt_tokens": [rng.randint(300, 1200) for _ in range(per_file)],
                "completion_tokens": [rng.randint(20, 200) for _ in range(per_file)],
                "deduplicated": [False] * per_file,
                "from_cache": [False] * per_file,
                "model": ["SmolLM2-135M-Instruct+rsafe-lora@x"] * per_file,
                "policy_id": ["rsafe-default"] * per_file,
                "policy_version": ["v1" if n < nights // 2 else "v2"] * per_file,
                "resume_key": [f"k{t}-{n}-{i}" for i in range(per_file)],
                "run_id": [f"run-{night}"] * per_file,
                "processed_at": [at + dt.timedelta(seconds=i) for i in range(per_file)],
            }
            schema = pa.schema([VERDICT_SCHEMA.field(name) for name in columns])
            folder = root / "verdicts" / f"tenant=tenant-{t}" / f"date={night}"
            folder.mkdir(parents=True)
            pq.write_table(pa.table(columns, schema=schema), folder / "part-0.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--tenants", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "out"
        write_output(root, args.rows, args.nights, args.tenants)
        started = time.monotonic()
        report = build_report(str(root))
        built = time.monotonic() - started
        page = render_html(report, "benchmark")
        total = time.monotonic() - started
    print(f"rows {report['units']}, {args.tenants} tenants x {args.nights} nights: queries + plots {built:.2f} s, "
          f"with HTML {total:.2f} s, page {len(page) / 1e6:.2f} MB, drift flags {len(report['drift'])}")  # fmt: skip


if __name__ == "__main__":
    main()
