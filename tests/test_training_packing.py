"""Shared-prefix packing for stage 1: the packed sequence computes exactly what each example alone computes (logits
and gradients), the packed split shares one policy per pack with labels that follow it, and the packed trainer
trains, checkpoints and resumes. A tiny random Llama stands in for the model where only the arithmetic matters."""

from __future__ import annotations

import collections
import dataclasses
import math

import pytest
import torch

from policies import load_policies
from training.dataset import DataConfig, build_datasets, write_datasets
from training.logging_callback import read_log
from training.packed_sft import PackedSFTConfig, group_packs, pack_of, run_packed_sft
from training.packing import build_pack, common_prefix_length, pack_tensors
from training.policy_variants import PolicyChoice, codes_for, derived_policy, label_in_pack
from transforms.engines.embedded_model import ensure_embedded_model

PACKED = DataConfig(train_per_cell=12, validation_per_cell=2, pack_size=4)


def _tiny_llama(vocab: int = 97, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def _examples(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 97, (20,), generator=gen).tolist()
    prompts = [prefix + torch.randint(0, 97, (n,), generator=gen).tolist() for n in (5, 9, 3)]
    completions = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in (4, 2, 6)]
    return prompts, completions


def test_build_pack_lays_out_prefix_segments_positions_and_labels():
    prompts, completions = [[1, 2, 3, 4], [1, 2, 3, 5, 6]], [[7, 8], [9]]
    pack = build_pack(prompts, completions)
    assert common_prefix_length(prompts) == 3
    assert pack.input_ids == [1, 2, 3, 4, 7, 8, 5, 6, 9]
    assert pack.position_ids == [0, 1, 2, 3, 4, 5, 3, 4, 5]
    assert pack.segments == [-1, -1, -1, 0, 0, 0, 1, 1, 1]
    # position t predicts token t + 1 of its own example: 4→7, 7→8; 6→9; nothing across segments
    assert pack.labels == [-100, -100, -100, 7, 8, -100, -100, 9, -100]
    assert pack.completion_tokens == 3
    # one prompt a prefix of another: a token of each prompt stays in its own segment
    assert build_pack([[1, 2], [1, 2, 3]], [[4], [5]]).segments[0] == -1
    with pytest.raises(ValueError):
        build_pack([[1]], [])


def test_packed_logits_and_gradients_equal_each_example_alone():
    model = _tiny_llama()
    prompts, completions = _examples()
    pack = build_pack(prompts, completions)
    inputs = pack_tensors(pack)
    labels = inputs.pop("labels")[0]
    logits = model(**inputs).logits[0]
    segments = torch.tensor(pack.segments)
    packed_loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    packed_loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    alone_loss = 0.0
    for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        ids = torch.tensor([prompt + completion])
        alone = model(input_ids=ids).logits[0]
        own = (segments == index).nonzero().flatten()
        torch.testing.assert_close(logits[own], alone[-len(own) :], atol=1e-5, rtol=1e-4)
        targets = torch.tensor([-100] * (len(prompt) - 1) + completion + [-100])
        alone_loss = alone_loss + torch.nn.functional.cross_entropy(alone, targets, ignore_index=-100, reduction="sum")
    alone_loss.backward()
    torch.testing.assert_close(packed_loss, alone_loss, atol=1e-4, rtol=1e-5)
    for packed, param in zip(packed_grads, model.parameters(), strict=True):
        torch.testing.assert_close(packed, param.grad, atol=1e-5, rtol=1e-4)  # incl. through the shared prefix


def test_label_in_pack_follows_the_pack_policy():
    policies = load_policies()
    default = policies["rsafe-default"]
    keep = tuple(c for c in default.categories if c.code in ("U1", "U2"))
    subset = PolicyChoice(derived_policy(default, keep, "subset"), "subset", "safe")
    assert label_in_pack(subset, policies, "unsafe", ("U2",)) == "unsafe"
    assert label_in_pack(subset, policies, "unsafe", ("U9",)) == "safe"  # the policy does not cover it
    assert label_in_pack(subset, policies, "unsafe", None) is None  # unknown: waits for another pack
    assert label_in_pack(subset, policies, "safe", None) == "safe"
    shuffled = PolicyChoice(derived_policy(default, default.categories[::-1], "shuffled"), "shuffled", "safe")
    assert label_in_pack(shuffled, policies, "unsafe", None) == "unsafe"
    medical = PolicyChoice(policies["medical-advice"], "tenant", "safe")
    assert label_in_pack(medical, policies, "unsafe", ("U13",)) is None  # the tenant rewrote U13


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_embedded_model())


@pytest.fixture(scope="module")
def packed(tokenizer):
    return build_datasets(PACKED, tokenizer)


def test_packed_split_shares_one_policy_per_pack_and_stays_balanced(packed, tokenizer):
    splits, report = packed
    assert report["splits"]["train"]["level_label"] == {
        f"{lv}/{lb}": PACKED.train_per_cell for lv in ("prompt", "response") for lb in ("safe", "unsafe")
    }
    packs = group_packs(splits["train"])
    assert max(len(p) for p in packs) == PACKED.pack_size and len(packs) < len(splits["train"])
    policies = load_policies()
    for members in packs:
        assert len({(r["policy_id"], r["level"], r["template"], tuple(r["policy_codes"])) for r in members}) == 1
        ids = [tokenizer.encode(r["prompt"], add_special_tokens=False) for r in members]
        assert len(members) == 1 or common_prefix_length(ids) > 150  # the policy is shared
        for r in members:
            if r["gold_label"] == "unsafe" and r["label"] == "safe":
                assert r["policy_kind"] == "subset" and not set(codes_for(r["category"])) & set(r["policy_codes"])
            if r["policy_kind"] in ("default", "shuffled"):
                assert r["label"] == r["gold_label"]
            assert r["completion"].split("</think>\n")[1].startswith("\\boxed{" + r["label"] + "}")
    assert "pack" not in splits["validation"][0]  # validation stays one policy draw per example
    assert policies  # loaded


def test_every_packed_target_ends_with_eos_so_the_guard_learns_to_stop(packed, tokenizer):
    members = group_packs(packed[0]["train"])[0]
    pack = pack_of(tokenizer, members)
    segments = torch.tensor(pack.segments)
    for index, record in enumerate(members):
        own = (segments == index).nonzero().flatten().tolist()
        targets = [pack.labels[t] for t in own if pack.labels[t] != -100]
        completion = tokenizer.encode(record["completion"], add_special_tokens=False)
        assert targets == [*completion, tokenizer.eos_token_id]
        assert pack.input_ids[own[-1]] == tokenizer.eos_token_id


def test_packed_split_is_deterministic(packed, tokenizer):
    again, _ = build_datasets(PACKED, tokenizer)
    assert again == packed[0]


def test_packed_trainer_trains_checkpoints_and_resumes(packed, tokenizer, tmp_path):
    splits, report = packed
    short = sorted(group_packs(splits["train"]), key=lambda p: sum(len(r["prompt"]) for r in p))[:3]
    data = tmp_path / "data"
    write_datasets({"train": [r for p in short for r in p], "validation": splits["validation"]}, report, data)
    model_dir = tmp_path / "tiny"
    _tiny_llama(vocab=len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config = PackedSFTConfig(
        model=str(model_dir), data_dir=str(data), out_dir=str(tmp_path / "sft"), learning_rate=5e-3,
        max_steps=3, save_steps=2, lora_first_layer=0, warmup_steps=0, threads=2,
    )  # fmt: skip
    adapter = run_packed_sft(config)
    assert (adapter / "adapter_model.safetensors").is_file()
    log = read_log(tmp_path / "sft" / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert (
        all(math.isfinite(r["loss"]) for r in log) and max(r["loss"] for r in log) - min(r["loss"] for r in log) > 1e-4
    )
    assert collections.Counter(r["examples"] for r in log).total() == 3 and all(r["examples"] >= 1 for r in log)
    # a rerun with more steps resumes from the newest whole checkpoint (step 3) instead of starting over; a save
    # a killed run left half-written (its staging folder) is not one
    (tmp_path / "sft" / ".staging-checkpoint-9").mkdir()
    run_packed_sft(dataclasses.replace(config, max_steps=4))
    assert [r["step"] for r in read_log(tmp_path / "sft" / "log.jsonl")] == [1, 2, 3, 4]
    saved = sorted(p.name for p in (tmp_path / "sft").iterdir() if "checkpoint" in p.name)
    assert saved == [".staging-checkpoint-9", "checkpoint-3", "checkpoint-4"]
