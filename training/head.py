"""`python -m training head`: the decision head, end to end — records, features, fit, fold-check, export.

Steps, each resumable (a rerun of the same command reuses what is on disk):
1. records (`training.head_data`): every usable training row under a drawn policy → `OUT/records.jsonl`.
2. features (`training.head_features`): vLLM reads the hidden states at the score position → `OUT/features/`.
3. fit (`training.head_fit`): logistic regression per candidate layer, chosen on the validation split; category
   heads; a TF-IDF baseline on the same rows → `OUT/head/` (the head) and `OUT/fit.json`. A finished fit (its
   `fit.json` and head on disk) is reused.
4. text (`training.head_text`): a text prior stacked on the head, kept if the stack validates better →
   `OUT/head/text_prior.*` and `OUT/text.json`.
`OUT/training.json` records data, features, validation figures and wall time per step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from training.dataset import atomic_write
from training.head_data import RECORDS_FILE, HeadDataConfig, build_head_records, read_records
from training.head_features import DEFAULT_LAYERS, ExtractionConfig, extract_records

log = logging.getLogger(__name__)
STEPS = ("records", "features", "fit", "text")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """One head run: where it goes, which served model's activations it reads, and each step's settings."""

    out_dir: str
    model_dir: str  # the model folder features are read from (the base the head is folded into)
    base: str  # how the job names that model (`embedded:lora`, `embedded:base`, or a folder)
    data: HeadDataConfig = dataclasses.field(default_factory=HeadDataConfig)
    layers: tuple[int, ...] = DEFAULT_LAYERS
    stop_after: str = "text"
    # which read-outs the fit may choose (default: every extracted layer, the final state, and `concat`, all of them
    # together). `final` is folded into the served model; any other is served pooled, beside the generating engine
    candidates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = {"final", "concat", *(str(k) for k in self.layers)}
        unknown = [c for c in self.candidates if c not in known]
        if unknown:
            raise ValueError(
                f"unknown --candidates {unknown}: choose from final, concat or the extracted layers {self.layers}"
            )


def _write_json(path: Path, value: dict) -> None:
    atomic_write(path, json.dumps(value, indent=2, default=str) + "\n")


def records_step(config: HeadConfig, out: Path) -> tuple[list[dict], dict]:
    """The rendered records (built once; a rerun reads them back) and their report."""
    path, report_path = out / RECORDS_FILE, out / "records.json"
    if path.is_file() and report_path.is_file():
        return read_records(out), json.loads(report_path.read_text())
    from transformers import AutoTokenizer

    started = time.monotonic()
    records, report = build_head_records(config.data, AutoTokenizer.from_pretrained(config.model_dir))
    report["wall_s"] = round(time.monotonic() - started, 1)
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    _write_json(report_path, report)
    return records, report


def run_head(config: HeadConfig) -> dict:
    """Run the steps up to `stop_after`; returns the run's `training.json` content."""
    if config.stop_after not in STEPS:
        raise ValueError(f"stop_after must be one of {STEPS}, got {config.stop_after!r}")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"config": dataclasses.asdict(config)}
    records, summary["records"] = records_step(config, out)
    log.info("head records: %d (%s)", len(records), summary["records"]["splits"])
    _write_json(out / "training.json", summary)  # a run stopped during its features still says what it reads
    if config.stop_after != "records":
        extraction = ExtractionConfig(model=config.model_dir, layers=config.layers)
        summary["features"] = extract_records(records, extraction, out / "features")
    if config.stop_after in ("fit", "text"):
        from training.head_fit import fit_step

        done = out / "fit.json"
        fitted = done.is_file() and (out / "head" / "head.json").is_file()
        summary["fit"] = json.loads(done.read_text()) if fitted else fit_step(records, out, config)
    if config.stop_after == "text":
        from training.head_text import text_step

        summary["text"] = text_step(records, out, config.model_dir)
    _write_json(out / "training.json", summary)
    return summary
