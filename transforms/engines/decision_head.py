"""The decision head: a linear read-out of the guard's own activations, served at the box.

A head is fitted (`python -m training head`) on the hidden state at the position where the cascade's score pass
reads P(unsafe) (`transforms.engines.chat_format.score_position_ids`). Its decision score is `w · [x_k / rms(x_L)
for k in layers]`: the residual stream after each read-out layer k, divided by the RMS the final norm divides by
(k = L is the final state). `build_guard_folder` makes the served model folder:
- a head on the final state alone is **folded** into the model (below), so vLLM's logits at the box *are* it;
- a head on several layers is **pooled**: the folder is the model unchanged plus the head's weights laid out over
  the pooling runner's vector (`transforms.engines.feature_reader`), served beside the generating engine
  (`transforms.engines.served_head.PooledHead`). Two output rows can read only the final state, and folding an
  earlier layer (projecting it through the later layers) broke the guard's generation (EVALUATION.md).

Folding, for a head on one layer k:

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
import shutil
from collections.abc import Sequence
from typing import Any

from transforms.engines.served_head import PooledHead, ServedHead
from transforms.engines.text_prior import TEXT_PRIOR_FILES, TextPrior

HEAD_FORMAT = "rsafe-decision-head/1"
FOLD_VERSION = 2  # 1 wrote the head into the safe/unsafe rows (ruined generation); 2: a decision token of its own
POOLED_VERSION = 1  # the layout of a pooled folder (`build_pooled_folder`)
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
    for name in TEXT_PRIOR_FILES:  # a text prior stacked on the decision is part of the head
        if (head_dir / name).is_file():
            digest.update(name.encode() + b"\0" + (head_dir / name).read_bytes())
    return digest.hexdigest()[:12]


def write_head(
    head_dir: pathlib.Path, decision: Any, layers: Sequence[int], categories: dict[str, Any], config: dict[str, Any]
) -> str:
    """Save a head (decision weights over the concatenated features of `layers`, category weights over the final
    normed state, and its config); return its version."""
    import torch
    from safetensors.torch import save_file

    head_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"decision": torch.as_tensor(decision, dtype=torch.float32).contiguous()}
    codes = sorted(categories)
    if codes:
        tensors["categories"] = torch.stack([torch.as_tensor(categories[c], dtype=torch.float32) for c in codes])
    save_file(tensors, str(head_dir / HEAD_WEIGHTS))
    document = {"format": HEAD_FORMAT, "layers": [int(k) for k in layers], "category_codes": codes, **config}
    (head_dir / HEAD_CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return head_version(head_dir)


def read_head(head_dir: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, tensors) of a saved head; a clear error for a folder that is not one."""
    from safetensors.torch import load_file

    config = json.loads((head_dir / HEAD_CONFIG).read_text(encoding="utf-8"))
    if config.get("format") != HEAD_FORMAT:
        raise RuntimeError(f"{head_dir / HEAD_CONFIG} is not a {HEAD_FORMAT} file")
    return config, load_file(str(head_dir / HEAD_WEIGHTS))


def head_layers(config: dict[str, Any]) -> tuple[int, ...]:
    """The read-out layers of a saved head, in the order of its weights (a head saved before several layers could
    be read names one `layer`)."""
    layers = config.get("layers")
    return tuple(int(k) for k in layers) if layers else (int(config["layer"]),)


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
    (layer,) = head_layers(config)
    decision_token, slots = fold_head(model, tokenizer, tensors["decision"], layer, categories)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    safe, _ = verdict_token_ids(tokenizer)
    served = ServedHead(head_version(head_dir), safe, decision_token, tuple(slots), tuple(slots.values()))
    served.write(out_dir)
    return served


def pooled_weights(decision: Any, layers: Sequence[int], last_layer: int, gamma: Any) -> tuple[tuple[int, ...], Any]:
    """(hook layers, weights over the pooling runner's vector) of a head over `layers`' features.

    The runner pools `[h, x_k / rms(x_L) for k in hook layers]` with `h = γ · x_L / rms(x_L)` the normed state, so
    the final state's block of the head is divided by γ and moved to the front; every other block keeps its weights.
    """
    import numpy as np

    gamma = np.asarray(gamma, dtype=np.float32)
    hidden = len(gamma)
    blocks = dict(zip(layers, np.asarray(decision, dtype=np.float32).reshape(len(layers), hidden), strict=True))
    hooks = tuple(k for k in layers if k != last_layer)
    final = blocks[last_layer] / gamma if last_layer in blocks else np.zeros(hidden, dtype=np.float32)
    return hooks, np.concatenate([final, *(blocks[k] for k in hooks)])


def build_pooled_folder(base_dir: str, head_dir: pathlib.Path, out_dir: pathlib.Path) -> PooledHead:
    """Base model folder + saved head → the base's files unchanged plus the head as the pooling runner reads it."""
    import numpy as np

    config, tensors = read_head(head_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in pathlib.Path(base_dir).iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copyfile(path, out_dir / path.name)
    gamma = norm_weight(base_dir)
    hooks, decision = pooled_weights(tensors["decision"].numpy(), head_layers(config), final_layer(base_dir), gamma)
    categories = tensors["categories"].numpy() if "categories" in tensors else np.zeros((0, len(gamma)), np.float32)
    codes = tuple(config["category_codes"])
    served = PooledHead(head_version(head_dir), hooks, codes, decision, categories, TextPrior.read(head_dir))
    served.write(out_dir)
    return served


def norm_weight(model_dir: str) -> Any:
    """γ of the model's final norm (`model.norm.weight`, numpy fp32), read from its safetensors."""
    import numpy as np
    from safetensors import safe_open

    for path in sorted(pathlib.Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), "np") as handle:
            if "model.norm.weight" in set(handle.keys()):
                return handle.get_tensor("model.norm.weight").astype(np.float32)
    raise RuntimeError(f"no model.norm.weight in {model_dir}")


def final_layer(model_dir: str) -> int:
    """The model's layer count (L: the final state's read-out layer)."""
    return int(json.loads((pathlib.Path(model_dir) / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])


def is_foldable(config: dict[str, Any], last_layer: int) -> bool:
    """A head on the final state alone is folded into the model; any other is served pooled."""
    return head_layers(config) == (last_layer,)


def serving_version(base_dir: str, head_dir: pathlib.Path) -> str:
    """How a saved head is served on `base_dir`, with that layout's version: `fold2` or `pooled1`."""
    foldable = is_foldable(read_head(head_dir)[0], final_layer(base_dir))
    return f"fold{FOLD_VERSION}" if foldable else f"pooled{POOLED_VERSION}"


def build_guard_folder(base_dir: str, head_dir: pathlib.Path, out_dir: pathlib.Path) -> ServedHead | PooledHead:
    """The served model folder for a saved head on `base_dir`: folded or pooled (`is_foldable`)."""
    config, _ = read_head(head_dir)
    if is_foldable(config, final_layer(base_dir)):
        if TextPrior.read(head_dir) is not None:
            raise ValueError(f"{head_dir}: a text prior is served with a pooled head, not a folded one")
        return build_folded_model(base_dir, head_dir, out_dir)
    return build_pooled_folder(base_dir, head_dir, out_dir)
