"""Decision-head features, read by vLLM itself at the position where the cascade's score pass reads P(unsafe).

For each record the token sequence is `transforms.engines.chat_format.score_position_ids` (the job's rendered prompt, an
empty thought, an opened box: exactly what the served engine sends), and the features are taken at its last
token: the final normed hidden state, and the residual stream after each of `layers`, divided by the RMS of the
final residual (what the final norm divides by, so a head on layer k can be folded into the served model:
`transforms.engines.decision_head`).

The engine is vLLM's pooling runner with last-token pooling and prefix caching: rows come sorted by policy, and
the first row of each policy is sent alone before the rest, so the policy prefix (~300-900 tokens) is computed
once and every other row pays only for its conversation and the prompt's tail. Forward hooks installed in the
engine's worker (`llm.apply_model`) append the intermediate layers to the pooled vector. Rows are extracted in
chunks saved as they finish (`chunk-<n>.npy`), so a stopped extraction resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transforms.engines.chat_format import score_position_ids

log = logging.getLogger(__name__)

DEFAULT_LAYERS = (12, 15, 18, 20, 22, 24, 26, 28)
_INSECURE_SERIALIZATION = "VLLM_ALLOW_INSECURE_SERIALIZATION"  # lets apply_model send a function to the worker


@dataclasses.dataclass(frozen=True)
class ExtractionConfig:
    """How features are extracted: the model folder, the layers read, and the engine's settings."""

    model: str
    layers: tuple[int, ...] = DEFAULT_LAYERS
    chunk_rows: int = 512
    kv_cache_gib: float = 2.0
    max_model_len: int = 4096
    block_size: int = 32


def install_feature_hooks(model: Any, layers: Sequence[int]) -> int:
    """In the engine's worker: make the final norm's output `[normed, x_k / rms(x_L) for k in layers]`.

    vLLM's Llama layers return `(hidden, residual)` with the residual add deferred, so the residual stream after
    a layer is their sum, and the final norm is called on both (its input, too, is their sum). Returns the width
    of the pooled vector.
    """
    import torch

    inner = model.model
    stash: dict[int, Any] = {}

    def keep(index: int):
        def hook(module, args, output):
            hidden, residual = output
            stash[index] = hidden if residual is None else hidden + residual

        return hook

    def widen(module, args, output):
        stream = args[0] if len(args) < 2 or args[1] is None else args[0] + args[1]
        rms = torch.sqrt(stream.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
        normed = output[0] if isinstance(output, tuple) else output
        wide = torch.cat([normed, *(stash.pop(k) / rms for k in layers)], dim=-1)
        return (wide, output[1]) if isinstance(output, tuple) else wide

    for index in layers:
        if not 1 <= index <= len(inner.layers):
            raise ValueError(f"layer {index} is outside the model's 1..{len(inner.layers)}")
        inner.layers[index - 1].register_forward_hook(keep(index))
    inner.norm.register_forward_hook(widen)
    return inner.norm.weight.shape[0] * (1 + len(layers))


class FeatureExtractor:
    """A pooling engine with the feature hooks installed; `extract` takes token id sequences."""

    def __init__(self, config: ExtractionConfig) -> None:
        from vllm import LLM
        from vllm.config import PoolerConfig

        from transforms.engines.cpu_serving import bind_model_threads

        os.environ[_INSECURE_SERIALIZATION] = "1"
        bind_model_threads()
        self.config = config
        self._llm = LLM(
            model=config.model,
            runner="pooling",
            dtype="float32",
            enforce_eager=True,
            max_model_len=config.max_model_len,
            kv_cache_memory_bytes=int(config.kv_cache_gib * (1 << 30)),
            block_size=config.block_size,
            enable_prefix_caching=True,
            pooler_config=PoolerConfig(seq_pooling_type="LAST", use_activation=False),
        )
        widths = self._llm.apply_model(functools.partial(install_feature_hooks, layers=config.layers))
        self.width = widths[0]
        self.tokenizer = self._llm.get_tokenizer()

    def extract(self, sequences: Sequence[list[int]], groups: Sequence[str]) -> np.ndarray:
        """Features `[n, 1 + len(layers), hidden]` of each sequence; the first of each new group warms its prefix."""
        from vllm.inputs import TokensPrompt

        first = {}
        for index, group in enumerate(groups):
            first.setdefault(group, index)
        warm = sorted(first.values())
        rest = [i for i in range(len(sequences)) if i not in set(warm)]
        vectors: dict[int, list[float]] = {}
        for batch in (warm, rest):
            if not batch:
                continue
            outputs = self._llm.embed([TokensPrompt(prompt_token_ids=sequences[i]) for i in batch], use_tqdm=False)
            vectors.update((i, o.outputs.embedding) for i, o in zip(batch, outputs, strict=True))
        array = np.asarray([vectors[i] for i in range(len(sequences))], dtype=np.float32)
        return array.reshape(len(sequences), 1 + len(self.config.layers), -1)


def extract_records(records: Sequence[dict], config: ExtractionConfig, out_dir: Path) -> dict:
    """Features of every record into `out_dir/features.npy` (row order = `records`), chunk by chunk, resumable.

    Returns the extraction report: rows, tokens, wall time without and with the engine start, rows/s.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = [records[i : i + config.chunk_rows] for i in range(0, len(records), config.chunk_rows)]
    pending = [n for n in range(len(chunks)) if not (out_dir / f"chunk-{n}.npy").is_file()]
    report_path = out_dir / "extraction.json"
    if not pending and report_path.is_file() and (out_dir / "features.npy").is_file():
        return json.loads(report_path.read_text())  # a rerun: the extraction's own figures, not a zero-row rerun
    started = time.monotonic()
    extractor = FeatureExtractor(config) if pending else None
    engine_start_s = time.monotonic() - started
    tokens = rows = 0
    extract_s = 0.0
    for done, n in enumerate(pending, 1):
        sequences = [score_position_ids(extractor.tokenizer, r["user_message"]) for r in chunks[n]]
        groups = [f"{r['policy_id']}/{r['level']}" for r in chunks[n]]
        t0 = time.monotonic()
        features = extractor.extract(sequences, groups)
        extract_s += time.monotonic() - t0
        _save(out_dir / f"chunk-{n}.npy", features)
        rows += len(sequences)
        tokens += sum(len(s) for s in sequences)
        eta = extract_s / rows * sum(len(chunks[m]) for m in pending[done:])
        log.info("features: chunk %d/%d, %d rows this run, %.2f rows/s, ETA %.0f min",
                 done, len(pending), rows, rows / extract_s, eta / 60)  # fmt: skip
    features = np.concatenate([np.load(out_dir / f"chunk-{n}.npy") for n in range(len(chunks))])
    _save(out_dir / "features.npy", features)
    report = {
        "rows": len(records),
        "rows_extracted_this_run": rows,
        "prompt_tokens_this_run": tokens,
        "engine_start_s": round(engine_start_s, 1),
        "extract_s": round(extract_s, 1),
        "rows_per_s": round(rows / extract_s, 3) if extract_s else None,
        "layers": list(config.layers),
        "shape": list(features.shape),
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _save(path: Path, array: np.ndarray) -> None:
    staging = path.with_name(path.name + ".tmp.npy")
    np.save(staging, array)
    staging.replace(path)
