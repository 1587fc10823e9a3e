"""Ship a trained adapter as the embedded guard: its files into `transforms/engines/embedded_guard/`, with provenance.

`training.json` beside the adapter says how it was made: the data report (sets, counts, overlap check), each
stage's config and final logged values, validation reports where present, and the adapter's version (the hash the
job records on every verdict). The merged HF folder is built from it by `transforms.engines.embedded_model` (at
install).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from training.logging_callback import read_log
from transforms.engines.embedded_model import GUARD_ADAPTER_DIR, adapter_version, guard_model_name

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MAX_ADAPTER_BYTES = 30 * 1024 * 1024


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _stage_summary(stage_dir: Path) -> dict | None:
    if not stage_dir.is_dir():
        return None
    log = read_log(stage_dir / "log.jsonl")
    return {
        "config": _read_json(stage_dir / "config.json"),
        "final": next((r for r in reversed(log) if "train_runtime" in r), None),
        "steps_logged": len(log),
        "validation": _read_json(stage_dir / "validation.json"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def export_adapter(adapter: Path, run_dir: Path, dest: Path = GUARD_ADAPTER_DIR) -> dict:
    """Copy the adapter's files into `dest` and write `training.json`; refuse an adapter over 30 MB."""
    for name in ADAPTER_FILES:
        if not (adapter / name).is_file():
            raise FileNotFoundError(f"{adapter / name} is missing: not a PEFT adapter folder")
    size = sum((adapter / name).stat().st_size for name in ADAPTER_FILES)
    if size > MAX_ADAPTER_BYTES:
        raise ValueError(f"adapter is {size / 2**20:.1f} MiB; the committed adapter must stay under 30 MiB")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.copyfile(adapter / name, dest / name)
    provenance = {
        "model": guard_model_name(dest),
        "adapter_version": adapter_version(dest),
        "adapter_bytes": size,
        "exported_from": str(adapter),
        "git_commit": _git_commit(),
        "data": _read_json(run_dir / "data" / "report.json"),
        "stages": {name: _stage_summary(run_dir / name) for name in ("sft", "grpo")},
        "licence": (
            "Trained on ToxicChat and BeaverTails-derived rows (CC-BY-NC-4.0): the adapter is for non-commercial "
            "use. Other sources: Aegis 2.0 (CC-BY-4.0), WildGuardMix (ODC-BY), JailbreakV-28K (MIT), DiaSafety "
            "(Apache-2.0). Base model SmolLM2-135M-Instruct: Apache-2.0."
        ),
    }
    (dest / "training.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance
