"""The embedded guard: the committed adapter, its version on every verdict, the aliases, the merge at install."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines import embedded_model as em
from transforms.vllm_engine import VllmEngineSpec


def test_the_committed_adapter_is_small_complete_and_documented():
    files = {p.name: p.stat().st_size for p in em.GUARD_ADAPTER_DIR.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "training.json"} <= files.keys()
    assert files["adapter_model.safetensors"] < 30 * 2**20
    provenance = json.loads((em.GUARD_ADAPTER_DIR / "training.json").read_text())
    assert provenance["adapter_version"] == em.adapter_version()
    assert "non-commercial" in provenance["licence"]
    assert provenance["data"]["eval_texts_checked"] > 10_000  # every benchmark string was checked
    config = json.loads((em.GUARD_ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"


def test_adapter_version_changes_with_the_weights(tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(em.GUARD_ADAPTER_DIR, copy)
    assert em.adapter_version(copy) == em.adapter_version()
    with open(copy / "adapter_model.safetensors", "ab") as handle:
        handle.write(b"\0")
    assert em.adapter_version(copy) != em.adapter_version()
    (copy / "adapter_config.json").unlink()
    with pytest.raises(RuntimeError, match=r"adapter_config\.json is missing"):
        em.adapter_version(copy)


def test_aliases_pick_the_guard_or_the_base_and_record_what_ran():
    assert em.model_label(None) == em.model_label(em.GUARD_ALIAS) == em.guard_model_name()
    assert em.guard_model_name() == f"SmolLM2-135M-Instruct+rsafe-lora@{em.adapter_version()}"
    assert em.model_label(em.BASE_ALIAS) == em.EMBEDDED_MODEL_NAME
    assert em.model_label("Nannanzi/RSafe") == "Nannanzi/RSafe"
    assert em.resolve_model("/models/x") == "/models/x"
    assert VllmEngineSpec().model_label == em.guard_model_name()
    assert VllmEngineSpec(model=em.BASE_ALIAS).model_label == em.EMBEDDED_MODEL_NAME


def test_guard_is_merged_once_per_adapter_version():
    guard = em.resolve_model(None)  # built at install: the cached merged folder
    assert guard.endswith(f"rsafe-guard-{em.adapter_version()}")
    marker = (em.model_cache_dir() / f"rsafe-guard-{em.adapter_version()}" / ".rsafe-complete").read_text()
    assert marker.strip() == em.guard_model_name()
    assert em.resolve_model(em.BASE_ALIAS).endswith(em.EMBEDDED_MODEL_NAME)
