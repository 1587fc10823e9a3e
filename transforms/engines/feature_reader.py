"""The guard's own activations at a position, read by vLLM's pooling runner: what a decision head is trained on
(`python -m training head`) and, for a head that reads more than the final state, what it is served on.

The pooled vector of a sequence is taken at its last token: the final normed hidden state, then the residual
stream after each of `layers`, divided by the RMS of the final residual (what the final norm divides by). Forward
hooks installed in the engine's worker (`llm.apply_model`) append the intermediate layers to the final norm's
output, which vLLM then pools (last-token pooling, prefix caching). One copy serves training and the job, so a head
is served on exactly the features it was fitted on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

INSECURE_SERIALIZATION = "VLLM_ALLOW_INSECURE_SERIALIZATION"  # lets apply_model send the hook installer over
WARM_KEY_TOKENS = 256  # sequences sharing their first this-many tokens share a policy prefix: one warms it


def install_feature_hooks(model: Any, layers: Sequence[int]) -> int:
    """In the engine's worker: make the final norm's output `[normed, x_k / rms(x_L) for k in layers]`.

    vLLM's Llama layers return `(hidden, residual)` with the residual add deferred, so the residual stream after
    a layer is their sum, and the final norm is called on both (its input, too, is their sum). Returns the width
    of the pooled vector.
    """
    import torch

    inner = model.model
    stash: dict[int, Any] = {}

    def keep(index: int):
        def hook(module, args, output):
            hidden, residual = output
            stash[index] = hidden if residual is None else hidden + residual

        return hook

    def widen(module, args, output):
        stream = args[0] if len(args) < 2 or args[1] is None else args[0] + args[1]
        rms = torch.sqrt(stream.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
        normed = output[0] if isinstance(output, tuple) else output
        wide = torch.cat([normed, *(stash.pop(k) / rms for k in layers)], dim=-1)
        return (wide, output[1]) if isinstance(output, tuple) else wide

    for index in layers:
        if not 1 <= index <= len(inner.layers):
            raise ValueError(f"layer {index} is outside the model's 1..{len(inner.layers)}")
        inner.layers[index - 1].register_forward_hook(keep(index))
    inner.norm.register_forward_hook(widen)
    return inner.norm.weight.shape[0] * (1 + len(layers))


@dataclasses.dataclass(frozen=True)
class ReaderSettings:
    """The pooling engine's settings (the same for training and serving, so features match)."""

    dtype: str = "float32"
    kv_cache_gib: float = 1.0
    max_model_len: int = 4096
    block_size: int = 32


class FeatureReader:
    """A pooling engine on `model` with the feature hooks for `layers`; `read` takes token id sequences."""

    def __init__(self, model: str, layers: Sequence[int], settings: ReaderSettings = ReaderSettings()) -> None:
        from vllm import LLM
        from vllm.config import PoolerConfig

        from transforms.engines.cpu_serving import bind_model_threads

        os.environ[INSECURE_SERIALIZATION] = "1"
        bind_model_threads()
        self.layers = tuple(layers)
        self._llm = LLM(
            model=model,
            runner="pooling",
            dtype=settings.dtype,
            enforce_eager=True,
            max_model_len=settings.max_model_len,
            kv_cache_memory_bytes=int(settings.kv_cache_gib * (1 << 30)),
            block_size=settings.block_size,
            enable_prefix_caching=True,
            pooler_config=PoolerConfig(seq_pooling_type="LAST", use_activation=False),
        )
        widths = self._llm.apply_model(functools.partial(install_feature_hooks, layers=self.layers))
        self.width = widths[0]
        self.tokenizer = self._llm.get_tokenizer()

    def read(self, sequences: Sequence[Sequence[int]], groups: Sequence[str] | None = None) -> np.ndarray:
        """Features `[n, 1 + len(layers), hidden]` at each sequence's last token.

        The first sequence of each group (default: of each distinct first `WARM_KEY_TOKENS` tokens, i.e. each
        policy prefix) is sent alone before the rest, so the shared prefix is computed once and cached for them.
        """
        from vllm.inputs import TokensPrompt

        if not sequences:
            return np.zeros((0, 1 + len(self.layers), self.width // (1 + len(self.layers))), dtype=np.float32)
        keys = groups if groups is not None else [tuple(s[:WARM_KEY_TOKENS]) for s in sequences]
        first: dict[Any, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        warm = sorted(first.values())
        warm_set = set(warm)
        rest = [i for i in range(len(sequences)) if i not in warm_set]
        vectors: dict[int, list[float]] = {}
        for batch in (warm, rest):
            if not batch:
                continue
            prompts = [TokensPrompt(prompt_token_ids=list(sequences[i])) for i in batch]
            outputs = self._llm.embed(prompts, use_tqdm=False)
            vectors.update((i, o.outputs.embedding) for i, o in zip(batch, outputs, strict=True))
        array = np.asarray([vectors[i] for i in range(len(sequences))], dtype=np.float32)
        return array.reshape(len(sequences), 1 + len(self.layers), -1)
