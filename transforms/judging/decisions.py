"""Rendered prompts → judgements, engine-agnostic: free RSafe generation, budget forcing, P(unsafe).

Modes (`verdict_mode`):
- `free`: faithful RSafe. The model's own last box is the verdict; none gives parse_error/truncated.
- `forced`: two-phase. Phase 1 reasons after an opened `<think>` within a token budget, stopping at
  `</think>`; phase 2 closes the thought if needed, opens `\\boxed{` and scores `safe`/`unsafe` as full
  continuations on the same (prefix-cached) context; the more probable one is the verdict.
- `auto`: free first; only units without a usable box go through phase 2.
- `cascade` (`transforms.judging.cascade`): a reasoning-free score first, reasoning only where it is needed.
- `score` (`transforms.judging.cascade`): the reasoning-free score alone decides every unit; no reasoning, no trace.
P(unsafe) is always from the engine's log-probabilities at the verdict position, normalised over the two.
With an engine serving a decision head, `transforms.judging.cascade.judge_batch` lets the head decide in every mode;
what these modes reason is then the unit's trace.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from transforms.engines.chat_format import BOX_OPEN, THINK_CLOSE, THINK_OPEN
from transforms.engines.protocol import Completion, Continuation, SamplingSettings, VerdictEngine
from transforms.judging.phase_tokens import CATEGORY_TOKENS, categories_suffix, verdict_opening
from transforms.judging.verdict_parsing import VERDICTS, extract_reasoning, parse_categories, parse_output

VERDICT_MODES = ("free", "forced", "auto", "cascade", "score")
REASONED_MODES = ("free", "forced", "auto")  # every unit reasoned (`judge_reasoned`)
DEFAULT_CASCADE_BAND = (0.2, 0.8)


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """How verdicts are produced and decided, for a whole run."""

    verdict_mode: str = "auto"
    sampling: SamplingSettings = dataclasses.field(default_factory=SamplingSettings)
    reasoning_budget: int = 128
    threshold: float = 0.5
    review_band: tuple[float, float] | None = None
    extract_categories: bool = False
    cascade_band: tuple[float, float] = DEFAULT_CASCADE_BAND  # cascade: P(unsafe) in it → full reasoning

    def __post_init__(self) -> None:
        if self.verdict_mode not in VERDICT_MODES:
            raise ValueError(f"verdict_mode must be one of {VERDICT_MODES}, got {self.verdict_mode!r}")
        if self.reasoning_budget < 1:
            raise ValueError(f"reasoning_budget must be >= 1, got {self.reasoning_budget}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        for name in ("review_band", "cascade_band"):
            band = getattr(self, name)
            if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
                raise ValueError(f"{name} must satisfy 0 <= low <= high <= 1, got {band}")


@dataclasses.dataclass(frozen=True)
class JudgeRequest:
    """One rendered prompt to judge, with its policy's overrides."""

    prompt: str
    reasoning_budget: int | None = None  # None: the run's budget
    allowed_codes: tuple[str, ...] = ()
    cascade_band: tuple[float, float] | None = None  # None: the run's band


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What the engine said about one prompt, before the tenant's decision rules."""

    outcome: str  # safe | unsafe | parse_error | truncated
    verdict_source: str | None  # model | forced | score (cascade pass 1) | head (decision head) | None
    p_unsafe: float | None
    reasoning: str
    raw_output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_budget: int
    categories: tuple[str, ...] = ()
    unknown_categories: tuple[str, ...] = ()
    score_p_unsafe: float | None = None  # cascade: pass 1's reasoning-free P(unsafe) of a reasoned unit
    trace_p_unsafe: float | None = None  # head cascade: P(unsafe) at the box after the trace's own reasoning
    category_scores: tuple[tuple[str, float], ...] = ()  # (code, P) per category head the policy has (score pass)


CONSISTENCY_GAP = 0.5  # reasoned vs reasoning-free P(unsafe) further apart than this: flagged


def consistency_flag(judgement: Judgement) -> str | None:
    """Why a reasoned verdict deserves a second look, or None: `thought_cut` (the budget cut the reasoning
    before the verdict was forced), `score_disagrees` (the cascade's reasoning-free score and the reasoned verdict
    fall on opposite sides of 0.5, more than `CONSISTENCY_GAP` apart), `trace_disagrees` (the head decided and
    its trace's own box falls on the other side of 0.5)."""
    if judgement.verdict_source == "forced" and judgement.finish_reason == "length":
        return "thought_cut"
    trace = judgement.trace_p_unsafe
    if judgement.verdict_source == "head" and trace is not None and (trace >= 0.5) != (judgement.p_unsafe >= 0.5):
        return "trace_disagrees"
    p, score = judgement.p_unsafe, judgement.score_p_unsafe
    if p is not None and score is not None and (p >= 0.5) != (score >= 0.5) and abs(p - score) > CONSISTENCY_GAP:
        return "score_disagrees"
    return None


def p_unsafe_from_logprobs(logprobs: dict[str, float]) -> float:
    """P(unsafe) / (P(unsafe) + P(safe)) from log-probabilities, computed stably."""
    difference = logprobs["safe"] - logprobs["unsafe"]
    if difference > 0:
        odds = math.exp(-difference)
        return odds / (1.0 + odds)
    return 1.0 / (1.0 + math.exp(difference))


def decide(outcome: str, p_unsafe: float | None, settings: JudgeSettings, on_unparsed: str) -> str:
    """The effective decision: `safe`, `unsafe` or `review`.

    A verdict with a probability follows the threshold, with the review band taking precedence; a verdict
    without one keeps its outcome; parse_error/truncated follow the tenant's rule (`flag` → review).
    """
    if outcome in VERDICTS:
        if p_unsafe is None:
            return outcome
        band = settings.review_band
        if band is not None and band[0] <= p_unsafe <= band[1]:
            return "review"
        return "unsafe" if p_unsafe >= settings.threshold else "safe"
    return "review" if on_unparsed == "flag" else on_unparsed


def judge_reasoned(engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings) -> list[Judgement]:
    """Judge a batch in `free`, `forced` or `auto` mode (`transforms.judging.cascade.judge_batch` takes every mode):
    every engine call covers the whole batch (or the part of it that needs that phase)."""
    if settings.verdict_mode in ("cascade", "score"):
        raise ValueError(
            f"judge_reasoned does not run {settings.verdict_mode}: use transforms.judging.cascade.judge_batch"
        )
    budgets = [r.reasoning_budget or settings.reasoning_budget for r in requests]
    prompts = [r.prompt for r in requests]
    if settings.verdict_mode == "forced":
        completions = engine.complete(
            prompts, settings.sampling, budgets, assistant_prefix=THINK_OPEN, stop=[THINK_CLOSE]
        )
        forced = _force_verdicts(engine, completions)
        judgements = [_forced_judgement(c, f, b) for c, f, b in zip(completions, forced, budgets, strict=True)]
        return _add_forced_categories(engine, requests, completions, judgements, settings)

    limit = settings.sampling.max_tokens
    completions = engine.complete(prompts, settings.sampling, [limit] * len(prompts))
    parsed = [parse_output(c.text, c.finish_reason) for c in completions]
    boxed = [i for i, p in enumerate(parsed) if p.box_start is not None]
    scores = engine.continuation_logprobs(
        [Continuation(completions[i], parsed[i].box_start, "") for i in boxed], VERDICTS
    )
    p_by_index = {i: p_unsafe_from_logprobs(s) for i, s in zip(boxed, scores, strict=True)}
    unboxed = [i for i, p in enumerate(parsed) if p.box_start is None]
    forced = {}
    if settings.verdict_mode == "auto" and unboxed:
        forced = dict(zip(unboxed, _force_verdicts(engine, [completions[i] for i in unboxed]), strict=True))

    judgements = []
    for index, (request, completion, result) in enumerate(zip(requests, completions, parsed, strict=True)):
        if index in forced:
            judgements.append(_forced_judgement(completion, forced[index], limit, opened_think=False))
            continue
        categories: tuple[list[str], list[str]] = ([], [])
        if settings.extract_categories and result.outcome == "unsafe":
            categories = parse_categories(completion.text, request.allowed_codes)
        judgements.append(
            Judgement(
                outcome=result.outcome,
                verdict_source="model" if result.box_start is not None else None,
                p_unsafe=p_by_index.get(index),
                reasoning=result.reasoning,
                raw_output=completion.text,
                finish_reason=completion.finish_reason,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                token_budget=limit,
                categories=tuple(categories[0]),
                unknown_categories=tuple(categories[1]),
            )
        )
    return _add_forced_categories(engine, requests, completions, judgements, settings)


def _add_forced_categories(
    engine: VerdictEngine,
    requests: Sequence[JudgeRequest],
    completions: Sequence[Completion],
    judgements: list[Judgement],
    settings: JudgeSettings,
) -> list[Judgement]:
    """With the categories template, ask forced verdicts decided unsafe for their category codes (phase 3).

    The model continues after its own thought, the forced box and a `Categories:` cue; codes are kept only
    if the tenant's policy has them (the rest are counted as unknown).
    """
    if not settings.extract_categories:
        return judgements
    wanted = [i for i, j in enumerate(judgements) if j.verdict_source == "forced" and j.p_unsafe >= settings.threshold]
    if not wanted:
        return judgements
    continuations = []
    for i in wanted:
        keep, suffix = verdict_opening(completions[i].text)
        continuations.append(Continuation(completions[i], keep, categories_suffix(suffix)))
    texts = engine.continue_text(continuations, settings.sampling, CATEGORY_TOKENS, stop=["\n"])
    for i, text in zip(wanted, texts, strict=True):
        known, unknown = parse_categories(categories_suffix(BOX_OPEN) + text, requests[i].allowed_codes)
        judgements[i] = dataclasses.replace(judgements[i], categories=tuple(known), unknown_categories=tuple(unknown))
    return judgements


def _force_verdicts(engine: VerdictEngine, completions: Sequence[Completion]) -> list[float]:
    """Phase 2 for each completion: P(unsafe) at a freshly opened verdict box after its thought."""
    continuations = []
    for completion in completions:
        keep, suffix = verdict_opening(completion.text)
        continuations.append(Continuation(completion, keep, suffix))
    scores = engine.continuation_logprobs(continuations, VERDICTS)
    return [p_unsafe_from_logprobs(s) for s in scores]


def _forced_judgement(completion: Completion, p_unsafe: float, budget: int, opened_think: bool = True) -> Judgement:
    text = (THINK_OPEN if opened_think else "") + completion.text
    return Judgement(
        outcome="unsafe" if p_unsafe >= 0.5 else "safe",
        verdict_source="forced",
        p_unsafe=p_unsafe,
        reasoning=extract_reasoning(text),
        raw_output=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        token_budget=budget,
    )
