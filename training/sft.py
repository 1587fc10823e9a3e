"""Stage 1, guided-reasoning warm start: supervised fine-tuning on the RSafe prompt → `<think>…</think>\\boxed{}`.

RSafe starts RL straight from a 7B instruct model. SmolLM2-135M never writes the RSafe format by itself (measured:
0 % boxed; GRPO from it gets reward 0 and zero variance in every group, so there is no gradient), so this stage
teaches the format, and the decision at the box, before GRPO. TRL's `SFTTrainer` with a PEFT LoRA adapter, loss on
the completion only; the prompt is the served, chat-templated prompt (`training.dataset`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from training.dataset import read_split
from training.logging_callback import JsonLogCallback

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class SFTStageConfig:
    """Stage-1 settings (`python -m training sft`)."""

    model: str
    data_dir: str
    out_dir: str
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (smoke runs)
    batch_size: int = 1  # one sequence per step: no padding on a CPU
    grad_accum: int = 8
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_first_layer: int = 14  # LoRA on layers >= this only: backward stops there (SmolLM2-135M has 30)
    max_examples: int | None = None
    seed: int = 0
    threads: int | None = None
    save_steps: int = 25
    logging_steps: int = 5


def lora_config(r: int, alpha: int, dropout: float, first_layer: int, num_layers: int):
    """LoRA on every linear layer of the decoder layers from `first_layer` on."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(LORA_TARGETS),
        layers_to_transform=list(range(first_layer, num_layers)),
        task_type="CAUSAL_LM",
    )


def num_layers(model: str) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model).num_hidden_layers


def latest_checkpoint(out_dir: Path) -> str | None:
    """The newest `checkpoint-N` folder under `out_dir`, to resume from."""
    found = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None


def run_sft(config: SFTStageConfig) -> Path:
    """Train; return the adapter folder (`out_dir/adapter`). Resumes from the newest checkpoint in `out_dir`."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(config.out_dir)
    records = read_split(Path(config.data_dir), "train")[: config.max_examples]
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])
    args = SFTConfig(
        output_dir=str(out_dir),
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16; this CPU has no bf16 units (emulated: ~40x slower, measured)
        model_init_kwargs={"dtype": "float32"},
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=5,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=4096,  # never truncate: keep_start truncation would cut the completion off
        completion_only_loss=True,
        gradient_checkpointing=False,  # TRL turns it on by default; memory is plenty here, time is not
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to=[],
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=config.model,
        args=args,
        train_dataset=dataset,
        peft_config=lora_config(
            config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_first_layer, num_layers(config.model)
        ),
        callbacks=[JsonLogCallback(out_dir / "log.jsonl", "sft")],
    )
    trainer.train(resume_from_checkpoint=latest_checkpoint(out_dir))
    adapter = out_dir / "adapter"
    trainer.save_model(str(adapter))
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return adapter
