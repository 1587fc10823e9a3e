"""The run's verdict mode → the engine calls: `judge_batch`, the entry point for every mode, and the cascade.

`free`, `forced` and `auto` are `transforms.judging.judge_reasoned`. `cascade` scores P(unsafe) first at the box
right after an empty thought (one prefill on the cached policy prefix and the teacher-forced scoring, no free
generation), then reasons only where it is needed:
- An engine without a decision head: a unit outside its uncertainty band is decided by that score
  (`verdict_source=score`); the rest are judged in `auto` mode, whose verdict and reasoning replace the score.
- An engine serving a folded decision head (`engine.decision_head`): the head decides every unit
  (`verdict_source=head`). Units in the band and units the head flags (P(unsafe) >= the threshold) are also
  reasoned in `auto` mode, for the trace an auditor reads; the trace does not overturn the head (its own box's
  P(unsafe) is kept as `trace_p_unsafe`, and a disagreement is flagged: EVALUATION.md measures the choice).
`score` is that first pass alone: every unit decided by its reasoning-free score (`verdict_source=head` with a
decision head, `score` without), no reasoning, for nights that need throughput more than traces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transforms.chat_format import EMPTY_THOUGHT, THINK_OPEN
from transforms.engine import Completion, Continuation, SamplingSettings, VerdictEngine
from transforms.judging import Judgement, JudgeRequest, JudgeSettings, judge_reasoned, p_unsafe_from_logprobs
from transforms.verdict_parsing import VERDICTS


def judge_batch(engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings) -> list[Judgement]:
    """Judge a batch in the run's verdict mode: every engine call covers the batch (or the part that needs it)."""
    head = getattr(engine, "decision_head", None) is not None
    if settings.verdict_mode == "score":
        return [
            _scored(probe, p, "head" if head else "score") for probe, p in score_without_reasoning(engine, requests)
        ]
    if settings.verdict_mode != "cascade":
        return judge_reasoned(engine, requests, settings)
    if head:
        return _head_cascade(engine, requests, settings)
    return _score_cascade(engine, requests, settings)


def score_without_reasoning(engine: VerdictEngine, requests: Sequence[JudgeRequest]) -> list[tuple[Completion, float]]:
    """Cascade pass 1: P(unsafe) at the box right after an empty thought, for every request.

    The one generated token only gives the engine a handle on the prompt (its prefill fills the prefix cache);
    it is dropped (`keep_chars=0`) before the box is scored.
    """
    greedy = SamplingSettings(max_tokens=1)
    probes = engine.complete([r.prompt for r in requests], greedy, [1] * len(requests), assistant_prefix=THINK_OPEN)
    scores = engine.continuation_logprobs([Continuation(c, 0, EMPTY_THOUGHT) for c in probes], VERDICTS)
    return [(c, p_unsafe_from_logprobs(s)) for c, s in zip(probes, scores, strict=True)]


def _reason(
    engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings, indices: Sequence[int]
) -> dict[int, Judgement]:
    """`auto`-mode judgements of the requests at `indices`."""
    if not indices:
        return {}
    auto = dataclasses.replace(settings, verdict_mode="auto")
    return dict(zip(indices, judge_reasoned(engine, [requests[i] for i in indices], auto), strict=True))


def _in_band(p: float, band: tuple[float, float]) -> bool:
    return band[0] <= p <= band[1]


def _scored(probe: Completion, p_unsafe: float, source: str) -> Judgement:
    return Judgement(
        outcome="unsafe" if p_unsafe >= 0.5 else "safe",
        verdict_source=source,
        p_unsafe=p_unsafe,
        reasoning="",
        raw_output="",
        finish_reason="score",
        prompt_tokens=probe.prompt_tokens,
        completion_tokens=0,
        token_budget=0,
    )


def _score_cascade(engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings) -> list[Judgement]:
    scored = score_without_reasoning(engine, requests)
    bands = [r.cascade_band or settings.cascade_band for r in requests]
    unsure = [i for i, ((_, p), band) in enumerate(zip(scored, bands, strict=True)) if _in_band(p, band)]
    reasoned = _reason(engine, requests, settings, unsure)
    judgements = []
    for index, (probe, p_unsafe) in enumerate(scored):
        if index in reasoned:
            judgements.append(dataclasses.replace(reasoned[index], score_p_unsafe=p_unsafe))
        else:
            judgements.append(_scored(probe, p_unsafe, "score"))
    return judgements


def _head_cascade(engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings) -> list[Judgement]:
    scored = score_without_reasoning(engine, requests)
    bands = [r.cascade_band or settings.cascade_band for r in requests]
    traced = [
        i
        for i, ((_, p), band) in enumerate(zip(scored, bands, strict=True))
        if _in_band(p, band) or p >= settings.threshold
    ]
    traces = _reason(engine, requests, settings, traced)
    judgements = []
    for index, (probe, p_unsafe) in enumerate(scored):
        decided = _scored(probe, p_unsafe, "head")
        trace = traces.get(index)
        if trace is not None:
            decided = dataclasses.replace(
                decided,
                reasoning=trace.reasoning,
                raw_output=trace.raw_output,
                finish_reason=trace.finish_reason,
                completion_tokens=trace.completion_tokens,
                token_budget=trace.token_budget,
                categories=trace.categories,
                unknown_categories=trace.unknown_categories,
                trace_p_unsafe=trace.p_unsafe,
            )
        judgements.append(decided)
    return judgements
