"""vLLM request values built from the run's settings: sampling parameters, and the token trie of scored choices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transforms.engines.protocol import SamplingSettings


def sampling_params(
    sampling: SamplingSettings, max_tokens: int, stop: Sequence[str], include_stop: bool, bias: dict[int, float]
) -> Any:
    """vLLM `SamplingParams` for the run's sampling settings (`bias`: tokens never to generate)."""
    from vllm import SamplingParams

    return SamplingParams(
        max_tokens=max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        repetition_penalty=sampling.repetition_penalty,
        seed=sampling.seed,
        stop=list(stop) or None,
        include_stop_str_in_output=include_stop,
        logit_bias=bias or None,
    )


def choice_trie(choice_ids: dict[str, list[int]]) -> dict[tuple[int, ...], list[int]]:
    """Each distinct token prefix of the choices → the next token ids to score after it."""
    trie: dict[tuple[int, ...], list[int]] = {}
    for ids in choice_ids.values():
        for i, token in enumerate(ids):
            nexts = trie.setdefault(tuple(ids[:i]), [])
            if token not in nexts:
                nexts.append(token)
    return trie
