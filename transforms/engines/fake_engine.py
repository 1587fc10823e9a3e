"""A fake engine behind the seam, for plumbing tests and plumbing benchmarks only (never a verdict of record).

It answers instantly and deterministically: a conversation block mentioning one of `unsafe_words` is unsafe.
Knobs make it misbehave the ways a real engine does: no box, running out of tokens, raising for a batch.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence

from transforms.engines.protocol import Completion, Continuation, SamplingSettings
from transforms.engines.served_head import ServedHead, category_readout

_BLOCK = re.compile(r"<BEGIN CONVERSATION>(.*)<END CONVERSATION>", re.DOTALL)


def count_words(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


@dataclasses.dataclass(frozen=True)
class FakeEngineSpec:
    """Recipe for a `FakeEngine` (picklable, like the real spec).

    `no_box_words`: content with one of these words gets an answer without a box (a parse error in free mode).
    `fail_words`: a batch containing a prompt with one of these words raises, as a crashed engine would.
    `seconds_per_call`: each `complete` call sleeps this long, so a plumbing run lasts long enough to interrupt.
    """

    unsafe_words: tuple[str, ...] = ("bomb", "weapon", "kill", "steal", "poison", "hack")
    no_box_words: tuple[str, ...] = ()
    uncertain_words: tuple[str, ...] = ()  # scored 0.5 when no reasoning precedes the box (cascade pass 1)
    fail_words: tuple[str, ...] = ()
    max_context_tokens: int = 4096
    model_name: str = "fake-engine"
    seconds_per_call: float = 0.0
    head_version: str | None = None  # set: the fake serves a decision head (the cascade lets it decide)
    head_categories: tuple[str, ...] = ()  # the head's category codes: the first scores 0.8 on unsafe content

    @property
    def cache_key(self) -> str:
        return f"fake:{dataclasses.astuple(self)}"

    def load(self) -> FakeEngine:
        return FakeEngine(self)

    def load_token_counter(self) -> Callable[[str], int]:
        return count_words

    def load_special_tokens(self) -> tuple[str, ...]:
        return ()  # counts words; no tokenizer


class FakeEngine:
    """`VerdictEngine` that needs no model. Counts its calls so tests can see batching and retries."""

    def __init__(self, spec: FakeEngineSpec) -> None:
        self.spec = spec
        self.model_name = spec.model_name
        self.max_context_tokens = spec.max_context_tokens
        self.complete_calls: list[int] = []  # batch size of every `complete` call
        self.score_calls: list[int] = []
        self.decision_head = None
        if spec.head_version:
            codes = spec.head_categories
            slots = tuple(range(2, 2 + len(codes)))
            self.decision_head = ServedHead(spec.head_version, 0, 1, codes, slots)

    def _conversation(self, prompt: str) -> str:
        match = _BLOCK.search(prompt)
        return (match.group(1) if match else prompt).lower()

    def _has(self, prompt: str, words: Sequence[str]) -> bool:
        block = self._conversation(prompt)
        return any(word in block for word in words)

    def count_prompt_tokens(self, user_messages: Sequence[str], assistant_prefix: str = "") -> list[int]:
        return [count_words(m) + count_words(assistant_prefix) + 3 for m in user_messages]

    def complete(
        self,
        user_messages: Sequence[str],
        sampling: SamplingSettings,
        max_tokens: Sequence[int],
        *,
        assistant_prefix: str = "",
        stop: Sequence[str] = (),
    ) -> list[Completion]:
        self.complete_calls.append(len(user_messages))
        time.sleep(self.spec.seconds_per_call)
        if any(self._has(m, self.spec.fail_words) for m in user_messages):
            raise RuntimeError("fake engine failure for this batch")
        completions = []
        for message, limit in zip(user_messages, max_tokens, strict=True):
            verdict = "unsafe" if self._has(message, self.spec.unsafe_words) else "safe"
            thought = f"The conversation looks {verdict} under the policy."
            text = f"{thought}\n</think>" if assistant_prefix else f"<think>\n{thought}\n</think>\n"
            if not stop and not self._has(message, self.spec.no_box_words):
                text += f"\\boxed{{{verdict}}}"
            words = text.split()
            finish = "stop"
            if len(words) > limit:
                text, finish = " ".join(words[:limit]), "length"
            completions.append(
                Completion(text, finish, count_words(message) + 3, min(len(words), limit), handle=message)
            )
        return completions

    def continuation_logprobs(
        self, continuations: Sequence[Continuation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        self.score_calls.append(len(continuations))
        results = []
        for continuation in continuations:
            unsafe = self._has(continuation.completion.handle, self.spec.unsafe_words)
            p_unsafe = 0.9 if unsafe else 0.1
            if continuation.keep_chars == 0 and self._has(continuation.completion.handle, self.spec.uncertain_words):
                p_unsafe = 0.5
            probabilities = {"unsafe": p_unsafe, "safe": 1 - p_unsafe}
            for rank, code in enumerate(self.spec.head_categories):  # read-out = log P(safe) + the head's logit
                p_code = 0.8 if unsafe and rank == 0 else 0.05
                probabilities[category_readout(code)] = (1 - p_unsafe) * p_code / (1 - p_code)
            results.append({c: math.log(probabilities.get(c, 1e-9)) for c in choices})
        return results

    def continue_text(
        self, continuations: Sequence[Continuation], sampling: SamplingSettings, max_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        return [" U1, X9" if self._has(c.completion.handle, self.spec.unsafe_words) else " none" for c in continuations]
