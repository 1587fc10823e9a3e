"""A quiet console for the nightly job: the terminal gets the job's own lines; everything else goes to a log file.

vLLM, Beam, tqdm and vLLM's engine-core process (a child that inherits the job's stdout/stderr) write a few hundred
lines of start-up INFO and warnings nobody can act on. `quiet_console` points file descriptors 1 and 2 at
`OUT/_runs/<run_id>.log` (children inherit them), and logs the job's own loggers to a saved copy of the terminal.
`--verbose` keeps everything on the terminal as before. On a TTY the progress lines redraw one status line with a
bar (`TerminalHandler`); under cron (not a TTY) they stay lines, one per engine batch and every 30 s in between.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import TextIO

JOB_LOGGERS = ("rsafe_batch", "pipelines", "transforms", "policies", "training")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _JobLinesOnly(logging.Filter):
    """The job's own records (INFO and up); other libraries' records only when they are errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in JOB_LOGGERS
        return record.levelno >= logging.ERROR or (own and record.levelno >= logging.INFO)


class TerminalHandler(logging.StreamHandler):
    """The terminal's handler: on a TTY, progress records (logged with `extra={"progress": True}`) redraw one
    status line with a bar instead of adding lines; anything else, or a stream that is not a TTY (cron), gets
    ordinary lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._status_shown = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not (tty and getattr(record, "progress", False)):
            if self._status_shown:
                self.stream.write("\n")
                self._status_shown = False
            super().emit(record)
            return
        try:
            self.stream.write(f"\r{progress_bar()} {self.format(record)}\x1b[K")
            self.flush()
            self._status_shown = True
        except Exception:
            self.handleError(record)


def progress_bar(width: int = 20) -> str:
    """`[#######-------------]` for this process's units judged / planned."""
    from transforms.stores.progress import PROGRESS

    planned, _ = PROGRESS.planned()
    done = min(PROGRESS.units_judged / planned, 1.0) if planned else 0.0
    filled = round(done * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def new_run_id() -> str:
    """A run id: the UTC start time and a random suffix (`20261201T020000Z-1a2b3c`)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def log_file_for(output: str, run_id: str) -> Path:
    """Where the run's full log goes: `OUT/_runs/<run_id>.log` for a local output, else a local cache folder."""
    if "://" in output:
        return Path.home() / ".cache" / "rsafe-batch" / "logs" / f"{run_id}.log"
    return Path(output) / "_runs" / f"{run_id}.log"


def quiet_console(log_path: Path, verbose: bool = False) -> TextIO:
    """Route everything to `log_path` and the job's lines to the terminal; returns the terminal stream."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    console = TerminalHandler(terminal)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log_fd, 1)  # inherited by the engine's processes: their output lands in the file too
        os.dup2(log_fd, 2)
        os.close(log_fd)
        console.addFilter(_JobLinesOnly())
        to_file = logging.StreamHandler(sys.stderr)  # fd 2: the log file
        to_file.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(to_file)
    else:
        console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # per-transform type-hint chatter
    return terminal


def tenant_table(per_tenant: dict[str, dict[str, int]]) -> list[str]:
    """The run summary's per-tenant lines: rows, units, verdict mix, dead letters, cache hits, reuse, and the
    tokens and engine seconds the engine spent on the tenant's units this run."""
    from transforms.stores.telemetry import ENGINE_MS, ENGINE_TOKENS  # here, not at import: it imports Beam

    columns = [
        ("rows", ("rows_to_units", "rows_dead_lettered", "rows_skipped")),
        ("units", ("units_made",)),
        ("safe", ("verdict_safe",)),
        ("unsafe", ("verdict_unsafe",)),
        ("review", ("verdict_review",)),
        ("dead", ("rows_dead_lettered",)),
        ("done before", ("units_already_done",)),
        ("cached", ("units_from_cache",)),
    ]
    width = max([len("tenant"), *(len(t) for t in per_tenant)])
    names = [name for name, _ in columns] + ["tokens", "engine s"]
    lines = ["  ".join([f"{'tenant':<{width}}", *(f"{name:>11}" for name in names)])]
    for tenant, counts in sorted(per_tenant.items()):
        cells = [f"{sum(counts.get(k, 0) for k in keys):>11}" for _, keys in columns]
        cells += [f"{counts.get(ENGINE_TOKENS, 0):>11}", f"{counts.get(ENGINE_MS, 0) / 1000:>11.1f}"]
        lines.append("  ".join([f"{tenant or '(none)':<{width}}", *cells]))
    return lines
