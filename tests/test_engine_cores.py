"""The CPU engine's settings: the cores its threads are bound to (the user's binding, a local Dask worker's own
slice, or every allowed core on a small machine: the affinity mask, not the host's core count), and its dtype."""

from __future__ import annotations

import pytest

from transforms.engines import cpu_cores, cpu_serving
from transforms.engines.cpu_cores import core_list, slice_of_worker
from transforms.engines.cpu_serving import BIND_ENV as BIND
from transforms.engines.cpu_serving import WORKER_CORES_ENV


@pytest.mark.parametrize(
    ("workers", "cores", "expected"),
    [
        (2, [0, 1], ["0", "1"]),
        (2, list(range(8)), ["0-3", "4-7"]),
        (3, list(range(8)), ["0-1", "2-4", "5-7"]),
        (3, [0, 1], ["0", "1", "0"]),  # more workers than cores: one core each, round robin
        (1, [0, 1, 2, 3], ["0-3"]),
        (2, [2, 3, 6, 7], ["2-3", "6-7"]),  # a cpuset that is not 0..n-1
        (3, [4, 9], ["4", "9", "4"]),
    ],
)
def test_local_workers_get_disjoint_slices_of_the_allowed_cores(workers, cores, expected):
    assert [slice_of_worker(i, workers, cores) for i in range(workers)] == expected


@pytest.mark.parametrize(
    ("cores", "expected"), [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([7, 3, 4, 5], "3-5,7"), ([1, 3, 5], "1,3,5")]
)
def test_core_lists_are_the_form_vllm_parses(cores, expected):
    assert core_list(cores) == expected
    vllm_utils = pytest.importorskip("vllm.utils.cpu_resource_utils")  # vLLM's own parser, where installed
    assert vllm_utils.parse_id_list(expected) == sorted(cores)


def test_allowed_cores_are_the_affinity_mask():
    import os

    if hasattr(os, "sched_getaffinity"):
        assert cpu_cores.allowed_cores() == sorted(os.sched_getaffinity(0))
    assert cpu_cores.allowed_cores()


@pytest.fixture
def clean_env(monkeypatch):
    for name in (BIND, WORKER_CORES_ENV, cpu_serving._DEFAULTED_BIND_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu_serving, "allowed_cores", lambda: [0, 1])
    return monkeypatch


def test_small_machine_default_is_every_core(clean_env):
    cpu_serving.bind_model_threads()
    assert cpu_serving.os.environ[BIND] == "0-1"


def test_a_local_workers_slice_replaces_the_default_it_inherited(clean_env):
    cpu_serving.bind_model_threads()  # the job's process chose 0-1; a worker it started inherits that
    clean_env.setenv(WORKER_CORES_ENV, "1")
    cpu_serving.bind_model_threads()
    assert cpu_serving.os.environ[BIND] == "1"


def test_the_users_binding_wins(clean_env):
    clean_env.setenv(BIND, "0")
    clean_env.setenv(WORKER_CORES_ENV, "1")
    cpu_serving.bind_model_threads()
    assert cpu_serving.os.environ[BIND] == "0"


def test_large_machines_keep_vllms_own_binding(clean_env):
    clean_env.setattr(cpu_serving, "allowed_cores", lambda: list(range(64)))
    cpu_serving.bind_model_threads()
    assert BIND not in cpu_serving.os.environ


def test_a_small_cpuset_on_a_large_host_binds_its_own_cores(clean_env):
    clean_env.setattr(cpu_serving, "allowed_cores", lambda: [12, 13, 40])  # e.g. a container's cpuset
    cpu_serving.bind_model_threads()
    assert cpu_serving.os.environ[BIND] == "12-13,40"


@pytest.mark.parametrize(
    ("requested", "embedded", "cpu_without_bf16", "expected"),
    [
        ("auto", True, False, "float32"),  # the embedded models are saved in fp32
        ("auto", False, True, "float32"),  # an AVX2 CPU: vLLM's auto would emulate bf16
        ("auto", False, False, "auto"),  # GPU or a bf16-capable CPU: vLLM decides
        ("bfloat16", False, True, "bfloat16"),  # the user's --dtype wins
        ("float16", True, True, "float16"),
    ],
)
def test_serving_dtype(requested, embedded, cpu_without_bf16, expected):
    assert cpu_serving.serving_dtype(requested, embedded, cpu_without_bf16) == expected


def test_native_bf16_is_read_from_the_cpu_flags():
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert not cpu_serving.cpu_has_native_bf16(avx2)
    assert cpu_serving.cpu_has_native_bf16(sapphire)
    assert not cpu_serving.cpu_has_native_bf16("")
    assert isinstance(cpu_serving.cpu_has_native_bf16(), bool)  # this machine's /proc/cpuinfo
