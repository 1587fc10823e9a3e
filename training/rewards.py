"""RSafe's rule-based reward, exactly as the authors' code computes it, on the job's own verdict parser.

- format = 1 iff the whole completion matches `<think>.*</think>.*\\boxed{.*}.*` (DOTALL; any text before
  `<think>`, even whitespace, fails);
- accuracy = 1 iff the last box (`transforms.judging.verdict_parsing.last_box_content`, nested braces counted,
  lower-cased; an unclosed last box is no answer) equals the gold label, and only when format = 1;
- reward = 0.9·accuracy + 0.1·format → 1.0 (right), 0.1 (well-formed but wrong), 0.0 (malformed).

A chat template that pre-fills `<think>` in the prompt leaves it out of the completion; pass
`think_prefilled=True` and the tag is put back before matching, as the authors' scorer sees the full response.
The reward functions are plain callables with TRL's signature (`completions`, dataset columns as keywords).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from transforms.judging.verdict_parsing import last_box_content

_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
THINK_TAG = "<think>"


def format_score(completion: str, think_prefilled: bool = False) -> float:
    """1.0 when the completion has RSafe's format, else 0.0."""
    text = THINK_TAG + completion if think_prefilled else completion
    return 1.0 if _FORMAT.fullmatch(text) else 0.0


def boxed_answer(completion: str) -> str | None:
    """The last box's content, stripped and lower-cased (the authors' comparison), or None (no box, or the last
    one unclosed: the authors read only the last `\\boxed{`)."""
    found = last_box_content(completion, earlier_if_unclosed=False)
    return found[0].strip().lower() if found is not None else None


def accuracy_score(completion: str, label: str, think_prefilled: bool = False) -> float:
    """1.0 when the format holds and the last box equals the gold label, else 0.0."""
    if not format_score(completion, think_prefilled):
        return 0.0
    return 1.0 if boxed_answer(completion) == label.strip().lower() else 0.0


def rsafe_reward(completion: str, label: str, think_prefilled: bool = False) -> float:
    """0.9·accuracy + 0.1·format."""
    return 0.9 * accuracy_score(completion, label, think_prefilled) + 0.1 * format_score(completion, think_prefilled)


def _text(completion: object) -> str:
    """TRL passes strings for text prompts and message lists for conversational ones."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion)  # type: ignore[index, union-attr]


def rsafe_reward_func(completions: Sequence[object], label: Sequence[str], **_: object) -> list[float]:
    """TRL reward function: RSafe's reward of each completion against the dataset's `label` column."""
    return [rsafe_reward(_text(c), gold) for c, gold in zip(completions, label, strict=True)]


def format_reward_func(completions: Sequence[object], **_: object) -> list[float]:
    """TRL reward function (logged, weight 0): the format component alone."""
    return [format_score(_text(c)) for c in completions]


def accuracy_reward_func(completions: Sequence[object], label: Sequence[str], **_: object) -> list[float]:
    """TRL reward function (logged, weight 0): the accuracy component alone."""
    return [accuracy_score(_text(c), gold) for c, gold in zip(completions, label, strict=True)]
