"""Shared-prefix packing: several examples that share a policy trained as one sequence, the policy computed once.

A default-policy RSafe prompt is ~1,050 tokens, ~900 of them the policy, and the judged conversation plus the
target is only ~150-300. Examples drawn under one policy share their prompt's first tokens, so a pack of them is
laid out as `[shared prefix][rest of prompt 1 + target 1][rest of prompt 2 + target 2]…` with a block mask: each
segment attends to the prefix and causally to itself, never to another segment, and its position ids continue
from the prefix as they would alone. The logits are those of each example run alone (checked in
`tests/test_training_packing.py`) and the gradient is exact, including through the shared prefix — only the
prefix is computed once instead of once per example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Pack:
    """One packed sequence: token ids, position ids, the segment each token belongs to (-1 = the shared prefix)
    and the loss targets (`labels[t]` is the token position `t` predicts, -100 where no loss is taken)."""

    input_ids: list[int]
    position_ids: list[int]
    segments: list[int]
    labels: list[int]

    @property
    def completion_tokens(self) -> int:
        return sum(label != -100 for label in self.labels)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """The length of the longest token prefix every sequence shares."""
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for index in range(length):
        token = first[index]
        if any(s[index] != token for s in sequences[1:]):
            return index
    return length


def build_pack(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> Pack:
    """Pack examples (prompt ids, completion ids) whose prompts share a prefix; loss on the completions only.

    At least one prompt token per example stays in its own segment, so the first completion token is always
    predicted from inside the segment.
    """
    if len(prompts) != len(completions) or not prompts:
        raise ValueError("build_pack needs one completion per prompt, and at least one example")
    shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
    ids = list(prompts[0][:shared])
    positions = list(range(shared))
    segments = [-1] * shared
    labels = [-100] * shared
    for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        rest = list(prompt[shared:]) + list(completion)
        ids += rest
        positions += range(shared, shared + len(rest))
        segments += [index] * len(rest)
        # position t predicts token t + 1: the last prompt token predicts the first completion token, …
        targets = [-100] * (len(prompt) - shared - 1) + list(completion) + [-100]
        labels += targets
    return Pack(ids, positions, segments, labels)


def attention_mask(segments: Sequence[int]):
    """The boolean 4D mask `[1, 1, T, T]` (True = may attend): causal, the prefix to all, a segment to itself."""
    import torch

    seg = torch.tensor(segments)
    causal = torch.ones(len(seg), len(seg), dtype=torch.bool).tril()
    visible = (seg[None, :] == -1) | (seg[:, None] == seg[None, :])
    return (causal & visible)[None, None]


def pack_tensors(pack: Pack) -> dict:
    """The model inputs of a pack (batch of one) plus its `labels`."""
    import torch

    return {
        "input_ids": torch.tensor([pack.input_ids]),
        "position_ids": torch.tensor([pack.position_ids]),
        "attention_mask": attention_mask(pack.segments),
        "labels": torch.tensor([pack.labels]),
    }
