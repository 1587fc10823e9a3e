"""The decision head: a linear read-out of the guard's own activations, folded into the served model.

A head is fitted (`python -m training head`) on the hidden state at the position where the cascade's score pass
reads P(unsafe) (`transforms.engines.chat_format.score_position_ids`). Its decision score is `w · x_k / rms(x_L)`: the
residual stream after layer k, divided by the RMS the final norm divides by. Folding makes vLLM's logits there
*be* that score, with no new engine and no change to the job:

1. `lm_head` is untied from the input embedding (the embedding is unchanged, so no input changes).
2. For k < L, every later layer's writes to the residual stream (attention `o_proj`, MLP `down_proj`) lose their
   component along `w`, so `w · x_L = w · x_k`: the head's direction is frozen after layer k.
3. The row of an otherwise unused special token (the *decision token*) becomes `row(safe) + w / γ` (γ the final
   norm's weight), so `logit(decision) - logit(safe) = w · x_L / rms(x_L)`: the head's score. The engine reads
   P(unsafe) at the box as `sigmoid(logit(decision) - logit(safe))`.
4. Category heads (one per policy code the data labels) read the final normed state `h`: the row of another unused
   special token becomes `row(safe) + u_c`, so `logit(slot_c) - logit(safe) = u_c · h`.
The `safe`/`unsafe` rows themselves are left as they were: writing the head into them (`m ∓ w/2γ`) was tried and
ruined generation (the guard wrote `unsunsunssafe…` instead of its reasoning: the head's rows are large and win at
every position). The engine never generates the decision and category tokens (`logit_bias`).

Step 2 changes the final RMS a little (one direction of later writes is gone), so the served score equals the head
on the served model's own features exactly, and the fitted head (on the unfolded model's features) within a ratio
of about 1 ± 0.005 (measured per run and recorded in the head's `training.json`). The head has no intercept: it is
fitted through the origin, which costs nothing measurable (see EVALUATION.md).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

from transforms.engines.served_head import ServedHead

HEAD_FORMAT = "rsafe-decision-head/1"
FOLD_VERSION = 2  # 1 wrote the head into the safe/unsafe rows (ruined generation); 2: a decision token of its own
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
RESERVED_TOKENS = 3  # SmolLM2: <|endoftext|>, <|im_start|>, <|im_end|> are never used as category slots


def head_version(head_dir: pathlib.Path) -> str:
    """A short sha256 over the head's config and weights (which head a verdict came from)."""
    digest = hashlib.sha256()
    for name in (HEAD_CONFIG, HEAD_WEIGHTS):
        path = head_dir / name
        if not path.is_file():
            raise RuntimeError(f"the decision head is incomplete: {path} is missing")
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def write_head(
    head_dir: pathlib.Path, decision: Any, layer: int, categories: dict[str, Any], config: dict[str, Any]
) -> str:
    """Save a head (decision weights over layer `layer`'s features, category weights over the final normed
    state, and its config); return its version."""
    import torch
    from safetensors.torch import save_file

    head_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"decision": torch.as_tensor(decision, dtype=torch.float32).contiguous()}
    codes = sorted(categories)
    if codes:
        tensors["categories"] = torch.stack([torch.as_tensor(categories[c], dtype=torch.float32) for c in codes])
    save_file(tensors, str(head_dir / HEAD_WEIGHTS))
    document = {"format": HEAD_FORMAT, "layer": layer, "category_codes": codes, **config}
    (head_dir / HEAD_CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return head_version(head_dir)


def read_head(head_dir: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, tensors) of a saved head; a clear error for a folder that is not one."""
    from safetensors.torch import load_file

    config = json.loads((head_dir / HEAD_CONFIG).read_text(encoding="utf-8"))
    if config.get("format") != HEAD_FORMAT:
        raise RuntimeError(f"{head_dir / HEAD_CONFIG} is not a {HEAD_FORMAT} file")
    return config, load_file(str(head_dir / HEAD_WEIGHTS))


def verdict_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The tokens the box's verdict starts with: `safe` and the first token of `unsafe`."""
    safe = tokenizer.encode("safe", add_special_tokens=False)
    unsafe = tokenizer.encode("unsafe", add_special_tokens=False)
    if len(safe) != 1 or unsafe[0] == safe[0]:
        raise RuntimeError(f"cannot fold a head for this tokenizer: safe={safe}, unsafe={unsafe}")
    return safe[0], unsafe[0]


def slot_tokens(tokenizer: Any, count: int) -> list[int]:
    """`count` special tokens whose output rows may hold category heads (never EOS/BOS/PAD or chat markers)."""
    keep = {tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id}
    ids = sorted(set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder))
    chat = {
        i
        for i in ids
        if "im_" in tokenizer.convert_ids_to_tokens(i) or "endoftext" in tokenizer.convert_ids_to_tokens(i)
    }
    free = [i for i in ids if i not in keep and i not in chat]
    if len(free) < count:
        raise RuntimeError(f"the tokenizer has {len(free)} spare special tokens, {count} category heads need slots")
    return free[:count]


def fold_head(
    model: Any, tokenizer: Any, decision: Any, layer: int, categories: dict[str, Any]
) -> tuple[int, dict[str, int]]:
    """Fold the head into `model` (a transformers Llama-family causal LM, edited in place); returns the decision
    token and the category code → slot token map."""
    import torch

    inner = model.model
    layers = len(inner.layers)
    if not 1 <= layer <= layers:
        raise ValueError(f"head layer {layer} is outside the model's 1..{layers}")
    with torch.no_grad():
        embedding = inner.embed_tokens.weight
        if model.lm_head.weight.data_ptr() == embedding.data_ptr() or getattr(model.config, "tie_word_embeddings", 0):
            model.lm_head.weight = torch.nn.Parameter(embedding.detach().clone())
            model.config.tie_word_embeddings = False
            if getattr(model.config, "text_config", None) is not None:
                model.config.text_config.tie_word_embeddings = False
        w = torch.as_tensor(decision, dtype=embedding.dtype)
        if layer < layers:
            direction = w / w.norm()
            projection = torch.eye(len(w), dtype=w.dtype) - torch.outer(direction, direction)
            for block in inner.layers[layer:]:
                block.self_attn.o_proj.weight.copy_(projection @ block.self_attn.o_proj.weight)
                block.mlp.down_proj.weight.copy_(projection @ block.mlp.down_proj.weight)
        rows = model.lm_head.weight
        safe, _ = verdict_token_ids(tokenizer)
        codes = sorted(categories)
        decision_token, *category_tokens = slot_tokens(tokenizer, 1 + len(codes))
        rows[decision_token] = rows[safe] + w / inner.norm.weight
        slots = dict(zip(codes, category_tokens, strict=True))
        for code, token in slots.items():
            rows[token] = rows[safe] + torch.as_tensor(categories[code], dtype=rows.dtype)
    return decision_token, slots


def build_folded_model(base_dir: str, head_dir: pathlib.Path, out_dir: pathlib.Path) -> ServedHead:
    """Base model folder + saved head → a folded HF folder (fp32) with `rsafe_head.json`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, tensors = read_head(head_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    categories = dict(zip(config["category_codes"], tensors.get("categories", []), strict=True))
    decision_token, slots = fold_head(model, tokenizer, tensors["decision"], config["layer"], categories)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    safe, _ = verdict_token_ids(tokenizer)
    served = ServedHead(head_version(head_dir), safe, decision_token, tuple(slots), tuple(slots.values()))
    served.write(out_dir)
    return served
