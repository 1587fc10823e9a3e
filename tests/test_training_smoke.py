"""CI smoke run of both training stages on a tiny subset: a few SFT steps, then GRPO steps from that adapter.

Checks the loss is finite and moves, rewards are RSafe's values (0, 0.1 or 1), checkpoints and JSON logs are
written, a rerun resumes instead of starting over, and curves render. Uses the embedded base model on the CPU.
"""

from __future__ import annotations

import json
import math

import pytest

from training.curves import plot_curves
from training.dataset import DataConfig, build_datasets, write_datasets
from training.grpo import GRPOStageConfig, run_grpo
from training.logging_callback import read_log
from training.sft import SFTStageConfig, run_sft
from transforms.engines.embedded_model import ensure_embedded_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())
    splits, report = build_datasets(DataConfig(train_per_cell=6, validation_per_cell=1), tokenizer)
    shortest = sorted(splits["train"], key=lambda r: len(r["prompt"]))
    # the four shortest prompts, both labels: the smoke run's cost is the prompt length
    picked = [r for r in shortest if r["label"] == "unsafe"][:2] + [r for r in shortest if r["label"] == "safe"][:2]
    folder = tmp_path_factory.mktemp("data")
    write_datasets({"train": picked, "validation": splits["validation"]}, report, folder)
    return folder


def test_sft_then_grpo_smoke(tiny_data, tmp_path):
    base = ensure_embedded_model()
    sft_dir = tmp_path / "sft"
    sft = SFTStageConfig(
        model=base,
        data_dir=str(tiny_data),
        out_dir=str(sft_dir),
        max_steps=3,
        grad_accum=1,
        logging_steps=1,
        save_steps=2,
        learning_rate=1e-3,
        threads=2,
    )
    adapter = run_sft(sft)
    assert (adapter / "adapter_model.safetensors").is_file()
    losses = [r["loss"] for r in read_log(sft_dir / "log.jsonl") if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert max(losses) - min(losses) > 1e-4  # the loss moves
    assert (sft_dir / "checkpoint-2").is_dir()

    grpo_dir = tmp_path / "grpo"
    grpo = GRPOStageConfig(
        model=base,
        init_adapter=str(adapter),
        data_dir=str(tiny_data),
        out_dir=str(grpo_dir),
        max_steps=2,
        prompts_per_step=1,
        num_generations=2,
        max_completion_length=24,
        save_steps=1,
        threads=2,
    )
    run_grpo(grpo)
    log = [r for r in read_log(grpo_dir / "log.jsonl") if "reward" in r]
    assert len(log) == 2
    for record in log:
        assert 0.0 <= record["reward"] <= 1.0 and math.isfinite(record["loss"])
    completions = grpo_dir / "completions.jsonl"
    rewards = [json.loads(line)["reward"] for line in completions.read_text().splitlines()]
    assert rewards and set(rewards) <= {0.0, 0.1, 1.0}
    assert plot_curves(grpo_dir / "log.jsonl", "grpo", tmp_path / "grpo.png").stat().st_size > 1000
    assert plot_curves(sft_dir / "log.jsonl", "sft", tmp_path / "sft.png").stat().st_size > 1000

    # a rerun with more steps resumes from the newest checkpoint instead of starting over
    run_grpo(GRPOStageConfig(**{**grpo.__dict__, "max_steps": 3}))
    steps = [r["step"] for r in read_log(grpo_dir / "log.jsonl") if "reward" in r]
    assert steps == [1, 2, 3]
