"""Pure classification metrics for the benchmark harness; `unsafe` is the positive class.

Every function returns None where the metric is undefined (a zero denominator, or one class missing),
never a silent 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Confusion:
    """Counts of a binary confusion matrix (positive = unsafe)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def positives(self) -> int:
        """Gold positives (unsafe items)."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        """Gold negatives (safe items)."""
        return self.fp + self.tn


def confusion(gold: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
    """The confusion matrix of predictions against gold labels (True = unsafe)."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold and predicted differ in length: {len(gold)} != {len(predicted)}")
    pairs = list(zip(gold, predicted, strict=True))
    return Confusion(
        tp=sum(g and p for g, p in pairs),
        fp=sum(p and not g for g, p in pairs),
        fn=sum(g and not p for g, p in pairs),
        tn=sum(not g and not p for g, p in pairs),
    )


def precision(c: Confusion) -> float | None:
    """TP / (TP + FP); None when nothing was predicted unsafe."""
    return c.tp / (c.tp + c.fp) if c.tp + c.fp else None


def recall(c: Confusion) -> float | None:
    """TP / (TP + FN); None when the gold labels hold no unsafe item."""
    return c.tp / c.positives if c.positives else None


def f1(c: Confusion) -> float | None:
    """2·TP / (2·TP + FP + FN); None when the gold labels hold no unsafe item (recall undefined).

    When no item was predicted unsafe but some are, precision is undefined yet F1 is 0 (recall is 0).
    """
    if not c.positives:
        return None
    return 2 * c.tp / (2 * c.tp + c.fp + c.fn)


def accuracy(c: Confusion) -> float | None:
    """(TP + TN) / n; None for no items."""
    return (c.tp + c.tn) / c.n if c.n else None


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def auroc(gold: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties count one half).

    None when either class is absent. Equals P(score of a random unsafe item > that of a random safe one).
    """
    if len(gold) != len(scores):
        raise ValueError(f"gold and scores differ in length: {len(gold)} != {len(scores)}")
    n_pos = sum(1 for g in gold if g)
    n_neg = len(gold) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = average_ranks(scores)
    rank_sum = sum(r for r, g in zip(ranks, gold, strict=True) if g)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean; None for no values."""
    return sum(values) / len(values) if values else None


def expected_calibration_error(gold: Sequence[bool], p_unsafe: Sequence[float], bins: int = 10) -> float | None:
    """ECE: over `bins` equal-width bins of P(unsafe), the item-weighted gap between mean P(unsafe) and the
    unsafe rate. None for no items."""
    if len(gold) != len(p_unsafe):
        raise ValueError(f"gold and p_unsafe differ in length: {len(gold)} != {len(p_unsafe)}")
    if not gold:
        return None
    members: dict[int, list[tuple[bool, float]]] = {}
    for g, p in zip(gold, p_unsafe, strict=True):
        members.setdefault(min(int(p * bins), bins - 1), []).append((g, p))
    gap = sum(abs(sum(p for _, p in m) - sum(1 for g, _ in m if g)) for m in members.values())
    return gap / len(gold)
