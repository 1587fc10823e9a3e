"""Helpers shared by the benchmark scripts: machine facts, load, peak memory, synthetic logs, JSON output.

Every script is run as `python benchmarks/<name>.py ...` from the repository root (or anywhere: the scripts put
the repository root on `sys.path` themselves).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total_mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_mem = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": total_mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load() -> list[float]:
    """1/5/15-minute load averages (other work shares the machine: note it next to each figure)."""
    return [round(x, 2) for x in os.getloadavg()]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall and CPU seconds of a block (`with Stopwatch() as sw: ...; sw.wall, sw.cpu`)."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = cpu_seconds() - self._cpu


def write_log(rows: Sequence[dict], path: Path, row_group_rows: int | None = None) -> Path:
    """Write canonical conversation rows as one Parquet log file (row groups of `row_group_rows` if given)."""
    from scripts.generate_sample_logs import write_canonical

    write_canonical(list(rows), path, row_group_rows=row_group_rows)
    return path


def synthetic_rows(n: int, seed: int = 7, duplicate_fraction: float = 0.0) -> list[dict]:
    """`generate_conversations` rows (see scripts/generate_sample_logs.py)."""
    from scripts.generate_sample_logs import generate_conversations

    return generate_conversations(n, seed, duplicate_fraction)


def write_json(path: str | Path | None, data: dict) -> None:
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The command that produced the figures, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO_ROOT)
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def header(benchmark: str, args: dict) -> dict:
    """The common part of every result JSON."""
    return {
        "benchmark": benchmark,
        "date": now(),
        "machine": machine(),
        "load_start": load(),
        "command": command_line(),
        "args": args,
    }


def quiet_logs() -> None:
    """Keep Beam's and vLLM's chatter off the figures (warnings and errors still show on stderr)."""
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam", "vllm", "rsafe_batch", "transforms", "root"):
        logging.getLogger(name).setLevel(logging.ERROR if name != "rsafe_batch" else logging.WARNING)
    warnings.filterwarnings("ignore")


def rendered_units(log_path: str | Path, count_tokens, model_id: str, template: str = "rsafe") -> list:
    """The moderation units the pipeline makes from a log (same reader, policies, rendering and keys)."""
    from policies import load_policy_registry
    from transforms.io.read_logs import read_conversations_from_file
    from transforms.prompts.units import make_units
    from transforms.records import Conversation

    registry = load_policy_registry()
    units = []
    for item in read_conversations_from_file(str(log_path)):
        if not isinstance(item, Conversation):
            continue
        policy = registry.for_tenant(item.tenant_id)
        if policy is not None:
            units += make_units(item, policy, template, model_id, count_tokens)
    return units


def unique_by_content(units: Sequence) -> list:
    """One unit per content key, first occurrence first (what the pipeline judges after de-duplication)."""
    seen: dict[str, object] = {}
    for unit in units:
        seen.setdefault(unit.content_key, unit)
    return list(seen.values())


def start_engine(spec) -> tuple[object, float]:
    """Start the process-wide engine for `spec` (the one the pipeline's DoFns will share); (holder, seconds)."""
    from transforms.judging.judge_dofn import acquire_engine

    started = time.perf_counter()
    holder = acquire_engine(spec)
    return holder, time.perf_counter() - started


def reset_prefix_cache(engine) -> None:
    """Empty vLLM's prefix cache so one measurement does not ride on the previous one's cached prompts."""
    llm = getattr(engine, "_llm", None)
    if llm is not None:
        llm.reset_prefix_cache()


def verdict_rows(output: str | Path) -> list[dict]:
    """Every verdict row under a job output folder."""
    import pyarrow.parquet as pq

    files = sorted(Path(output, "verdicts").rglob("*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live descendants (vLLM's engine-core and worker processes).

    Deltas of this are the work a measurement cost the machine, which other load inflates far less than wall time.
    """
    try:
        import psutil
    except ImportError:  # psutil comes with vLLM; without it, this process only
        return cpu_seconds()
    me = psutil.Process()
    total = cpu_seconds()
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def recording_fake_engine_spec():
    """A fake-engine spec whose engine keeps every `complete` call's prompts (to see how the job batches)."""
    import dataclasses

    from transforms.engines.fake_engine import FakeEngine, FakeEngineSpec

    class RecordingFakeEngine(FakeEngine):
        def __init__(self, spec) -> None:
            super().__init__(spec)
            self.calls: list[list[str]] = []

        def complete(self, user_messages, *args, **kwargs):
            self.calls.append(list(user_messages))
            return super().complete(user_messages, *args, **kwargs)

    @dataclasses.dataclass(frozen=True)
    class RecordingFakeEngineSpec(FakeEngineSpec):
        model_name: str = "recording-fake-engine"

        def load(self):
            return RecordingFakeEngine(self)

    return RecordingFakeEngineSpec()


RESULT_MARK = "BENCHMARK-RESULT "


def emit_result(figures: dict) -> None:
    """A child process's figures, on one marked stdout line (engines print their own lines to stdout too)."""
    print(RESULT_MARK + json.dumps(figures, default=str), flush=True)


def parse_result(stdout: str) -> dict:
    """The figures a child process emitted with `emit_result`."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise ValueError("the child process printed no result line")


def named_folders(
    parser: argparse.ArgumentParser,
    specs: Sequence[str],
    option: str,
    holds: str | None = None,
    what: str = "",
    at_least: int = 1,
) -> dict[str, Path]:
    """`NAME=FOLDER` arguments as {name: folder}, in their order. A malformed one, a name given twice, fewer than
    `at_least`, or a folder without the file `holds` (it is then not `what`) is answered by `parser.error` naming
    it (exit 2), never a traceback."""
    folders: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            parser.error(f"{option} takes NAME=FOLDER, got {spec!r}")
        if name in folders:
            parser.error(f"{option}: two folders named {name!r}")
        if holds and not (Path(folder) / holds).is_file():
            parser.error(f"{option} {spec} is not {what}: it has no {holds}")
        folders[name] = Path(folder)
    if len(folders) < at_least:
        parser.error(f"{option} takes NAME=FOLDER, at least {at_least} times")
    return folders
