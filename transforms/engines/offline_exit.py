"""How a process that started in-process vLLM engines ends: a command line, or a Dask worker closing."""

from __future__ import annotations

import os


def exit_after_offline_engine(code: int = 0) -> None:
    """End a command-line process that built in-process engines, once its results are written: the engine's
    core process kept the interpreter alive at exit (measured: `python -m training validate` hung for minutes
    after writing its report). The engines' core processes are stopped first: `os._exit` runs no finalizer, and a
    pooling engine's core was left running after `training export-head` (measured 2026-12-07)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    stop_engine_processes()
    os._exit(code)


def stop_engine_processes(timeout_s: float = 10.0) -> None:
    """Terminate this process's multiprocessing children (the engines' core processes, which stop their workers)
    and wait for them: nothing else would when the process ends without finalizers or is a worker being closed."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=timeout_s)
