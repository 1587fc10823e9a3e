"""CPU serving choices made before vLLM starts: which cores its threads bind to, and the dtype it serves in."""

from __future__ import annotations

import os
from pathlib import Path

from transforms.engines.cpu_cores import allowed_cores, core_list

_SMALL_MACHINE_CORES = 4
BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"  # vLLM's CPU backend: the cores its OpenMP threads are bound to
# Set by `pipelines.job.dask_support` in each worker of a local cluster: the cores that worker's engine may use.
WORKER_CORES_ENV = "RSAFE_WORKER_CORES"
# What the job itself put in VLLM_CPU_OMP_THREADS_BIND (inherited by child processes): not the user's choice.
_DEFAULTED_BIND_ENV = "RSAFE_DEFAULTED_THREADS_BIND"


def bind_model_threads() -> None:
    """Choose the cores the model's OpenMP threads run on, unless the user set `VLLM_CPU_OMP_THREADS_BIND`.

    A worker of a local Dask cluster gets its own slice of the machine (`WORKER_CORES_ENV`): engines of several
    workers bound to the same cores spin against each other. Otherwise, on <= 4 allowed cores (the process's
    affinity mask, not the host's count), every one of them: vLLM's CPU backend would keep one core for its
    scheduler process, so on 2 cores the model computed on one. An offline batch job waits inside `generate()`
    and the scheduler is light; measured on 2 cores: +35-80% decode throughput, -27% job wall time
    (BENCHMARKS.md, engine settings).
    """
    current = os.environ.get(BIND_ENV)
    if current is not None and current != os.environ.get(_DEFAULTED_BIND_ENV):
        return  # the user's binding
    cores = allowed_cores()
    chosen = os.environ.get(WORKER_CORES_ENV) or (core_list(cores) if len(cores) <= _SMALL_MACHINE_CORES else None)
    if chosen is None:
        return
    os.environ[BIND_ENV] = os.environ[_DEFAULTED_BIND_ENV] = chosen


def serving_dtype(requested: str, embedded: bool, cpu_without_bf16: bool) -> str:
    """The dtype the engine is built with. `auto` is float32 for the embedded models (saved in fp32) and for any
    model on a CPU without native bf16 (AVX2-only): there vLLM's `auto` turns an fp32 checkpoint into bf16,
    which such a CPU emulates: a merged guard took 347 s for 64 prompt-level units in bf16, the fp32 guard 68-108 s
    (BENCHMARKS.md §10). Elsewhere (GPUs, bf16-capable CPUs) vLLM's own `auto`. An explicit `--dtype` wins."""
    if requested != "auto":
        return requested
    return "float32" if embedded or cpu_without_bf16 else "auto"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (`avx512_bf16` or `amx_bf16` among /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {
        flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16"})
