"""The one seam between the pipeline and an inference engine.

An `EngineSpec` is a small picklable description shipped to workers; `load()` builds the engine once per worker
process (the judge DoFn shares it through Beam's `Shared`). A `VerdictEngine` runs whole batches: chat
completions, and the log-probability of fixed continuations after a completion (for forced verdicts and
P(unsafe)). The vLLM engine lives in `transforms.engines.vllm_engine`; a fake for plumbing tests and benchmarks in
`transforms.engines.fake_engine`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class EngineError(RuntimeError):
    """The engine could not be built (model missing or unloadable), or it failed for good."""


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """Sampling for every generation in a run, as one value (greedy by default: verdicts are reproducible)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclasses.dataclass(frozen=True)
class Completion:
    """One generation: its text and accounting, plus the engine's own handle to continue from it."""

    text: str
    finish_reason: str  # stop | length | error
    prompt_tokens: int
    completion_tokens: int
    handle: Any = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Continuation:
    """Where to score the verdict: `completion` cut to its first `keep_chars` characters, then `suffix`."""

    completion: Completion
    keep_chars: int
    suffix: str


class VerdictEngine(Protocol):
    """What the pipeline needs from an engine. Every method takes a whole batch."""

    model_name: str
    max_context_tokens: int

    def count_prompt_tokens(self, user_messages: Sequence[str], assistant_prefix: str = "") -> list[int]:
        """Tokens of each chat-templated prompt (user message + the start of the assistant's turn)."""
        ...

    def complete(
        self,
        user_messages: Sequence[str],
        sampling: SamplingSettings,
        max_tokens: Sequence[int],
        *,
        assistant_prefix: str = "",
        stop: Sequence[str] = (),
    ) -> list[Completion]:
        """Generate for each user message (sent through the chat template) up to its own token limit.

        `assistant_prefix` is put at the start of the assistant's turn (e.g. an opened `<think>`); a stop
        string, when hit, ends the text.
        """
        ...

    def continuation_logprobs(
        self, continuations: Sequence[Continuation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """For each continuation point, log P(choice) of every choice as a full continuation there."""
        ...

    def continue_text(
        self, continuations: Sequence[Continuation], sampling: SamplingSettings, max_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        """Generate on from each continuation point (e.g. the category codes after a forced verdict)."""
        ...


def open_prompts(engine: VerdictEngine, user_messages: Sequence[str], assistant_prefix: str = "") -> list[Completion]:
    """A handle on each prompt to score or continue from, its text dropped (`keep_chars=0`): the engine's own
    `open_prompts` where it has one, else one generated token (its prefill fills the prefix cache that the
    scoring request then hits)."""
    opener = getattr(engine, "open_prompts", None)
    if opener is not None:
        return opener(user_messages, assistant_prefix)
    return one_token_probes(engine, user_messages, assistant_prefix)


def one_token_probes(
    engine: VerdictEngine, user_messages: Sequence[str], assistant_prefix: str = ""
) -> list[Completion]:
    """One generated token per prompt: a handle whose prefill fills the engine's prefix cache."""
    one = SamplingSettings(max_tokens=1)
    return engine.complete(user_messages, one, [1] * len(user_messages), assistant_prefix=assistant_prefix)


class EngineSpec(Protocol):
    """Picklable recipe for an engine: built once per worker process."""

    @property
    def cache_key(self) -> str:
        """Identifies the engine; workers share one loaded engine per key."""
        ...

    def load(self) -> VerdictEngine:
        """Build the engine (heavy: called once per worker process)."""
        ...

    def load_token_counter(self) -> Callable[[str], int]:
        """A cheap function counting the model's tokens in a text (for fitting conversations to a budget)."""
        ...

    def load_special_tokens(self) -> tuple[str, ...]:
        """The model tokenizer's special/added token strings, which message content must not be able to spell."""
        ...
