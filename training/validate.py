"""A trained stage on the validation split, through the job's own judge (real vLLM engine, free RSafe mode).

Reports what stage 2 is judged by, on the same items for every stage: the mean RSafe reward of the greedy
output, the rate of completions in RSafe's format, F1 (unsafe positive; no verdict counts as wrong) and AUROC
from P(unsafe) at the model's own box.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipelines.evaluation import scores
from training.dataset import read_split, write_split
from training.rewards import format_score, rsafe_reward
from transforms.engines.protocol import SamplingSettings
from transforms.judging.decisions import JudgeRequest, JudgeSettings, judge_reasoned

BATCH = 64


def score_records(records: list[dict], outputs: list[tuple[str, str, float | None]]) -> dict:
    """Metrics of (raw output, outcome, P(unsafe)) against the records' labels."""
    gold = [r["label"] == "unsafe" for r in records]
    predicted = [outcome == "unsafe" for _, outcome, _ in outputs]
    c = scores.confusion(gold, predicted)
    scored = [(g, p) for g, (_, _, p) in zip(gold, outputs, strict=True) if p is not None]
    return {
        "n": len(records),
        "mean_reward": scores.mean(
            [rsafe_reward(t, r["label"]) for (t, _, _), r in zip(outputs, records, strict=True)]
        ),
        "format_rate": scores.mean([format_score(t) for t, _, _ in outputs]),
        "boxed_rate": scores.mean([1.0 if o in ("safe", "unsafe") else 0.0 for _, o, _ in outputs]),
        "f1": scores.f1(c),
        "accuracy": scores.accuracy(c),
        "auroc": scores.auroc([g for g, _ in scored], [p for _, p in scored]),
    }


def judge_records(model_dir: str, records: list[dict], max_tokens: int) -> list[tuple[str, str, float | None]]:
    """(raw output, outcome, P(unsafe)) of each record's served prompt, free mode (the model's own answer, a head or
    not), greedy, real vLLM engine."""
    from transforms.engines.vllm_engine import VllmEngineSpec

    engine = VllmEngineSpec(model=model_dir, dtype="float32", max_model_len=4096).load()
    settings = JudgeSettings(verdict_mode="free", sampling=SamplingSettings(max_tokens=max_tokens))
    outputs = []
    for start in range(0, len(records), BATCH):
        requests = [JudgeRequest(r["user_message"]) for r in records[start : start + BATCH]]
        outputs += [(j.raw_output, j.outcome, j.p_unsafe) for j in judge_reasoned(engine, requests, settings)]
    return outputs


def informative(record: dict, output: tuple[str, str, float | None], low: float = 0.1) -> bool:
    """Worth a GRPO group: the greedy answer is wrong or malformed, or P(unsafe) is not near 0 or 1 (a group
    of sampled answers that all agree has zero advantage and teaches nothing)."""
    text, _, p = output
    if rsafe_reward(text, record["label"]) < 1.0 or p is None:
        return True
    return low < p < 1.0 - low


def validate(model_dir: str, data_dir: Path, max_tokens: int = 128, limit: int | None = None) -> dict:
    """Judge the validation split with `model_dir` (an HF folder) and score it."""
    records = read_split(data_dir, "validation")[:limit]
    outputs = judge_records(model_dir, records, max_tokens)
    report = score_records(records, outputs)
    report["by_level"] = {
        level: score_records(
            [r for r in records if r["level"] == level],
            [o for o, r in zip(outputs, records, strict=True) if r["level"] == level],
        )
        for level in ("prompt", "response")
    }
    return report


def _with_model(base: str, adapter: str, run: Callable[[str], dict]) -> dict:
    """Run `run(model_dir)` on `base` merged with `adapter` (in a temporary folder), or on `base` alone."""
    from transforms.engines.embedded_model import merge_adapter

    if not adapter:
        return run(base)
    with tempfile.TemporaryDirectory(prefix="rsafe-validate-") as folder:
        merge_adapter(base, adapter, Path(folder))
        return run(folder)


def select_focus(base: str, adapter: str, data_dir: Path, sample: int, seed: int, max_tokens: int = 128) -> dict:
    """Score `sample` training records with the stage-1 model; write the informative ones as `grpo.jsonl`."""
    records = read_split(data_dir, "train")
    records = random.Random(seed).sample(records, min(sample, len(records)))

    def run(model_dir: str) -> dict:
        outputs = judge_records(model_dir, records, max_tokens)
        kept = [{**r, "stage1_p_unsafe": o[2]} for r, o in zip(records, outputs, strict=True) if informative(r, o)]
        write_split(data_dir, "grpo", kept)
        return {"scored": len(records), "kept": len(kept), **score_records(records, outputs)}

    return _with_model(base, adapter, run)


def validate_adapter(base: str, adapter: str, data_dir: Path, out: Path, max_tokens: int = 128) -> dict:
    """Merge `adapter` into `base` in a temporary folder, validate it, write the report to `out`."""
    report = _with_model(base, adapter, lambda model_dir: validate(model_dir, data_dir, max_tokens))
    report.update(base=base, adapter=adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report
