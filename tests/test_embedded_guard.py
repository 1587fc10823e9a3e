"""The embedded guard: the committed adapter and head, their versions on every verdict, the aliases, the build."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from transforms.engines import embedded_model as em
from transforms.engines.decision_head import FOLD_VERSION, POOLED_VERSION, serving_version
from transforms.engines.served_head import ServedHead
from transforms.engines.vllm_engine import VllmEngineSpec


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


def test_aliases_pick_the_guard_the_stage1_guard_or_the_base_and_record_what_ran(tmp_path):
    adapter, head = em.adapter_version(), em.guard_head_version()
    assert em.model_label(None) == em.model_label(em.GUARD_ALIAS) == em.guard_model_name()
    assert em.guard_model_name() == f"SmolLM2-135M-Instruct+rsafe-lora@{adapter}+rsafe-head@{head}"
    assert em.model_label(em.LORA_ALIAS) == em.lora_model_name() == f"SmolLM2-135M-Instruct+rsafe-lora@{adapter}"
    assert em.model_label(em.BASE_ALIAS) == em.EMBEDDED_MODEL_NAME
    assert em.model_label("Nannanzi/RSafe") == "Nannanzi/RSafe"
    assert em.resolve_model("/models/x") == "/models/x"
    assert VllmEngineSpec().model_label == em.guard_model_name()
    assert VllmEngineSpec(model=em.BASE_ALIAS).model_label == em.EMBEDDED_MODEL_NAME
    ServedHead("abc123", 1, 2).write(tmp_path)  # any folder with a folded head names its version
    assert em.model_label(str(tmp_path)) == f"{tmp_path}+rsafe-head@abc123"


def test_guard_is_built_once_per_adapter_and_head_version():
    adapter, head = em.adapter_version(), em.guard_head_version()
    guard = em.resolve_model(None)  # built at install: the cached folder, named by how the head is served
    served_as = serving_version(em.resolve_model(em.LORA_ALIAS), em.GUARD_HEAD_DIR)
    assert served_as in (f"fold{FOLD_VERSION}", f"pooled{POOLED_VERSION}")
    assert guard.endswith(f"rsafe-guard-{adapter}-head-{head}-{served_as}")
    assert (em.model_cache_dir() / guard / ".rsafe-complete").read_text().strip() == em.guard_model_name()
    served = ServedHead.read(guard)
    assert served is not None and served.version == head
    lora = em.resolve_model(em.LORA_ALIAS)
    assert lora.endswith(f"rsafe-guard-{adapter}") and ServedHead.read(lora) is None
    assert (em.model_cache_dir() / lora / ".rsafe-complete").read_text().strip() == em.lora_model_name()
    assert em.resolve_model(em.BASE_ALIAS).endswith(em.EMBEDDED_MODEL_NAME)


def test_the_committed_head_is_complete_and_documented():
    from transforms.engines.decision_head import head_layers, read_head

    config, tensors = read_head(em.GUARD_HEAD_DIR)
    assert config["base"] == em.LORA_ALIAS and all(1 <= k <= 30 for k in head_layers(config))
    assert tensors["decision"].shape == (576 * len(head_layers(config)),)
    assert len(config["category_codes"]) == (0 if "categories" not in tensors else len(tensors["categories"]))
    provenance = json.loads((em.GUARD_HEAD_DIR / "training.json").read_text())
    assert provenance["head_version"] == em.guard_head_version()
    assert provenance["records"]["eval_texts_checked"] > 10_000  # every benchmark string was checked
    assert provenance["fit"]["decision"]["validation"]["auroc"] > 0.7


def test_the_builder_command_answers_help_and_refuses_unknown_options_without_building(tmp_path):
    env = {"RSAFE_MODEL_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "transforms.engines.embedded_model"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0 and "Build the embedded models once" in shown.stdout
    refused = subprocess.run([*command, "--bogus"], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "unrecognized arguments: --bogus" in refused.stderr
    assert not (tmp_path / "cache").exists()  # neither built anything
