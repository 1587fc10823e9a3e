"""Decision-head features, read by vLLM itself at the position where the cascade's score pass reads P(unsafe).

For each record the token sequence is `transforms.engines.chat_format.score_position_ids` (the job's rendered prompt, an
empty thought, an opened box: exactly what the served engine sends), and the features are taken at its last
token: the final normed hidden state, and the residual stream after each of `layers`, divided by the RMS of the
final residual (what the final norm divides by).

The reader is `transforms.engines.feature_reader` (the same one that serves a multi-layer head): vLLM's pooling
runner with last-token pooling and prefix caching; rows come sorted by policy, and the first row of each policy is
sent alone before the rest, so the policy prefix (~300-900 tokens) is computed once and every other row pays only
for its conversation and the prompt's tail. Rows are extracted in chunks saved as they finish (`chunk-<n>.npy`),
so a stopped extraction resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transforms.engines.chat_format import score_position_ids
from transforms.engines.feature_reader import FeatureReader, ReaderSettings

log = logging.getLogger(__name__)

DEFAULT_LAYERS = (12, 15, 18, 20, 22, 24, 26, 28)


@dataclasses.dataclass(frozen=True)
class ExtractionConfig:
    """How features are extracted: the model folder, the layers read, and the engine's settings."""

    model: str
    layers: tuple[int, ...] = DEFAULT_LAYERS
    chunk_rows: int = 512
    kv_cache_gib: float = 2.0
    max_model_len: int = 4096
    block_size: int = 32

    def reader(self) -> FeatureReader:
        settings = ReaderSettings("float32", self.kv_cache_gib, self.max_model_len, self.block_size)
        return FeatureReader(self.model, self.layers, settings)


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
    extractor = config.reader() if pending else None
    engine_start_s = time.monotonic() - started
    tokens = rows = 0
    extract_s = 0.0
    for done, n in enumerate(pending, 1):
        sequences = [score_position_ids(extractor.tokenizer, r["user_message"]) for r in chunks[n]]
        groups = [f"{r['policy_id']}/{r['level']}" for r in chunks[n]]
        t0 = time.monotonic()
        features = extractor.read(sequences, groups)
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
