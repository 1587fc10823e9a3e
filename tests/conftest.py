"""Shared fixtures: the real vLLM engine on the embedded model, started once per test session."""

from __future__ import annotations

import pytest

from transforms.engines.vllm_engine import VllmEngineSpec
from transforms.judging.judge_dofn import EngineHolder, acquire_engine

# The one engine recipe every real-engine test uses, so the pipeline's DoFns find the session's engine already
# loaded (same cache key) instead of starting another one.
REAL_ENGINE_SPEC = VllmEngineSpec(max_model_len=4096)


@pytest.fixture(scope="session")
def real_engine() -> EngineHolder:
    """The real vLLM engine (embedded SmolLM2-135M-Instruct), held for the whole session."""
    return acquire_engine(REAL_ENGINE_SPEC)
