"""Which cores the CPU engine's threads are bound to: the user's binding, a local Dask worker's own slice, or
every core on a small machine."""

from __future__ import annotations

import pytest

from transforms import vllm_engine
from transforms.vllm_engine import BIND_ENV as BIND
from transforms.vllm_engine import WORKER_CORES_ENV


@pytest.mark.parametrize(
    ("workers", "cores", "expected"),
    [
        (2, 2, ["0", "1"]),
        (2, 8, ["0-3", "4-7"]),
        (3, 8, ["0-1", "2-4", "5-7"]),
        (3, 2, ["0", "1", "0"]),  # more workers than cores: one core each, round robin
        (1, 4, ["0-3"]),
    ],
)
def test_local_workers_get_disjoint_slices_while_there_are_cores(workers, cores, expected):
    pytest.importorskip("distributed")
    from pipelines.dask_support import cores_of_local_worker

    assert [cores_of_local_worker(i, workers, cores) for i in range(workers)] == expected


@pytest.fixture
def clean_env(monkeypatch):
    for name in (BIND, WORKER_CORES_ENV, vllm_engine._DEFAULTED_BIND_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(vllm_engine.os, "cpu_count", lambda: 2)
    return monkeypatch


def test_small_machine_default_is_every_core(clean_env):
    vllm_engine._bind_model_threads()
    assert vllm_engine.os.environ[BIND] == "0-1"


def test_a_local_workers_slice_replaces_the_default_it_inherited(clean_env):
    vllm_engine._bind_model_threads()  # the job's process chose 0-1; a worker it started inherits that
    clean_env.setenv(WORKER_CORES_ENV, "1")
    vllm_engine._bind_model_threads()
    assert vllm_engine.os.environ[BIND] == "1"


def test_the_users_binding_wins(clean_env):
    clean_env.setenv(BIND, "0")
    clean_env.setenv(WORKER_CORES_ENV, "1")
    vllm_engine._bind_model_threads()
    assert vllm_engine.os.environ[BIND] == "0"


def test_large_machines_keep_vllms_own_binding(clean_env):
    clean_env.setattr(vllm_engine.os, "cpu_count", lambda: 64)
    vllm_engine._bind_model_threads()
    assert BIND not in vllm_engine.os.environ
