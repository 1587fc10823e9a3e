"""The cores this process may run on, and the id-list strings vLLM's CPU backend binds its threads to.

`os.cpu_count()` counts the host's cores; inside a container with a cpuset, or under `taskset`, only some of them
are allowed, and not always `0..n-1`. Thread bindings are built from the affinity mask instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence


def allowed_cores() -> list[int]:
    """The ids of the cores this process may run on, sorted (its affinity mask; every core where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform (macOS)
        return list(range(os.cpu_count() or 1))


def core_list(cores: Sequence[int]) -> str:
    """`[0, 1, 2, 5]` → `"0-2,5"`: the form `VLLM_CPU_OMP_THREADS_BIND` parses (runs of ids as ranges)."""
    if not cores:
        raise ValueError("no cores to list")
    runs = []
    # consecutive ids share (id - position): each group is one run
    for _, group in itertools.groupby(enumerate(sorted(set(cores))), key=lambda pair: pair[1] - pair[0]):
        ids = [core for _, core in group]
        runs.append(str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}")
    return ",".join(runs)


def slice_of_worker(index: int, workers: int, cores: Sequence[int]) -> str:
    """The cores (a `core_list`) of worker `index` of `workers` sharing `cores`: disjoint slices while there are
    enough cores, else one core each, round robin."""
    ids = sorted(cores)
    if workers >= len(ids):
        return str(ids[index % len(ids)])
    start, stop = index * len(ids) // workers, (index + 1) * len(ids) // workers
    return core_list(ids[start:stop])
