"""Stage 1 on a packed split: each pack (examples sharing one policy) is one sequence, its policy computed once.

TRL's `SFTTrainer` packs by concatenation, which would let examples attend to each other and restart no
positions; it cannot share a prefix. This loop does what it does for stage 1 otherwise — LoRA on the upper decoder
layers (`training.sft.lora_config`), loss on the completion tokens only, AdamW, cosine schedule with warmup,
gradient clipping at 1.0, a JSON log per optimizer step, resumable checkpoints — on `training.packing` sequences.
It can start from an existing adapter (`init_adapter`) to continue training on fresh examples.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from training.dataset import read_split
from training.packing import build_pack, pack_tensors
from training.sft import latest_checkpoint, lora_config, num_layers


@dataclasses.dataclass(frozen=True)
class PackedSFTConfig:
    """Packed stage-1 settings (`python -m training sft --packed`)."""

    model: str
    data_dir: str
    out_dir: str
    init_adapter: str | None = None
    learning_rate: float = 2e-4
    epochs: int = 1
    max_steps: int = -1  # > 0: stop after this many optimizer steps (smoke runs)
    packs_per_step: int = 1
    warmup_steps: int = 5
    lora_r: int = 16
    lora_alpha: int = 32
    lora_first_layer: int = 14
    seed: int = 0
    threads: int | None = None
    save_steps: int = 10


def group_packs(records: list[dict]) -> list[list[dict]]:
    """The split's records grouped by their `pack` number, in file order."""
    packs: dict[int, list[dict]] = {}
    for record in records:
        if "pack" not in record:
            raise ValueError("the split is not packed: build it with `python -m training data --pack-size N`")
        packs.setdefault(int(record["pack"]), []).append(record)
    return list(packs.values())


def pack_of(tokenizer, records: list[dict]):
    """The pack of `records`: each prompt's ids, and its completion's ids ending in the EOS token.

    As TRL's `SFTTrainer` does, the target ends with EOS (`<|im_end|>` here), so the guard learns to stop after
    its box; without it a served guard runs on to `max_tokens` and its box is never read.
    """
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    eos = [tokenizer.eos_token_id]
    return build_pack([encode(r["prompt"]) for r in records], [encode(r["completion"]) + eos for r in records])


def _model(config: PackedSFTConfig):
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    if config.init_adapter:
        return PeftModel.from_pretrained(base, config.init_adapter, is_trainable=True)
    layers = num_layers(config.model)
    return get_peft_model(base, lora_config(config.lora_r, config.lora_alpha, 0.0, config.lora_first_layer, layers))


def pack_loss(model, pack) -> tuple:
    """(summed token loss, completion tokens, correctly predicted tokens) of one pack."""
    import torch

    inputs = pack_tensors(pack)
    labels = inputs.pop("labels")[0]
    keep = (labels != -100).nonzero().flatten()
    logits = model(**inputs, logits_to_keep=keep).logits[0]
    targets = labels[keep]
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss, len(keep), int((logits.argmax(-1) == targets).sum())


def run_packed_sft(config: PackedSFTConfig) -> Path:
    """Train; return the adapter folder (`out_dir/adapter`). Resumes from the newest checkpoint in `out_dir`."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm
    from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out_dir = Path(config.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    packs = [pack_of(tokenizer, group) for group in group_packs(read_split(Path(config.data_dir), "train"))]
    steps_per_epoch = math.ceil(len(packs) / config.packs_per_step)
    total = config.max_steps if config.max_steps > 0 else steps_per_epoch * config.epochs
    model = _model(config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, total)
    done = 0
    resume = latest_checkpoint(out_dir)
    if resume:
        set_peft_model_state_dict(model, load_file(str(Path(resume) / "adapter_model.safetensors")))
        state = torch.load(Path(resume) / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        done = state["step"]
    log_path = out_dir / "log.jsonl"
    start = time.monotonic()
    for step in tqdm(range(done, total), initial=done, total=total, desc="sft (packed)"):
        group = [packs[(step * config.packs_per_step + i) % len(packs)] for i in range(config.packs_per_step)]
        losses, tokens, correct = zip(*(pack_loss(model, pack) for pack in group), strict=True)
        loss = sum(losses) / sum(tokens)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        record = {
            "stage": "sft",
            "step": step + 1,
            "epoch": (step + 1) / steps_per_epoch,
            "time_s": round(time.monotonic() - start, 2),
            "loss": loss.item(),
            "grad_norm": grad_norm,
            "learning_rate": schedule.get_last_lr()[0],
            "mean_token_accuracy": sum(correct) / sum(tokens),
            "num_tokens": sum(len(p.input_ids) for p in group),
            "examples": sum(max(p.segments) + 1 for p in group),
        }
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if (step + 1) % config.save_steps == 0 or step + 1 == total:
            _save_checkpoint(model, optimizer, schedule, step + 1, out_dir / f"checkpoint-{step + 1}")
    adapter = out_dir / "adapter"
    model.save_pretrained(str(adapter))
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return adapter


def _save_checkpoint(model, optimizer, schedule, step: int, folder: Path) -> None:
    """The adapter plus optimizer and schedule state, written to a staging folder and renamed into place (a run
    killed mid-save leaves no half checkpoint to resume from); older checkpoints beyond the newest two removed."""
    import shutil

    import torch

    staging = folder.with_name(f".staging-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    torch.save(
        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step},
        staging / "trainer_state.pt",
    )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    found = sorted(folder.parent.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for old in found[:-2]:
        shutil.rmtree(old)
