"""The run's verdict mode → the engine calls: `judge_batch`, the entry point for every mode, and the cascade.

`free`, `forced` and `auto` are `transforms.judging.decisions.judge_reasoned`, except with an engine serving a
decision head (`engine.decision_head`, folded or pooled): the head was trained at one position, the box right after
an empty thought, and read anywhere else (the box after the guard's reasoning) it ranks worse and passes almost
everything (EVALUATION.md), so there the head decides every unit from the score pass below (`verdict_source=head`)
and the mode's reasoning is kept as the unit's trace (its own box's P(unsafe) as `trace_p_unsafe`).

`cascade` scores P(unsafe) first at the box right after an empty thought (one prefill on the cached policy prefix
and the teacher-forced scoring, no free generation), then reasons only where it is needed:
- An engine without a decision head: a unit outside its uncertainty band is decided by that score
  (`verdict_source=score`); the rest are judged in `auto` mode, whose verdict and reasoning replace the score.
- An engine serving a decision head: the head decides every unit (`verdict_source=head`). Units in the band and
  units the head flags (P(unsafe) >= the threshold) are also reasoned in `auto` mode, for the trace an auditor
  reads; the trace does not overturn the head (its own box's P(unsafe) is kept as `trace_p_unsafe`, and a
  disagreement is flagged: EVALUATION.md measures the choice).
A head may carry a text prior (`transforms.engines.text_prior`): its P(unsafe) is then the stack of the head's
log-odds and the prior's reading of the conversation block, in every mode the head decides.
`score` is that first pass alone: every unit decided by its reasoning-free score (`verdict_source=head` with a
decision head, `score` without), no reasoning, for nights that need throughput more than traces.

With a head that carries category heads, the same request of the score pass also reads them: each unit gets
`category_scores`, P per category head whose code its policy has (in the policy's order). With the categories
template (`extract_categories`), every unit decided unsafe that has no listed categories yet (decided by the score
or the head, or traced to a safe box) is asked for its codes after the empty thought and an `unsafe` box (phase 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transforms.engines.chat_format import BOX_OPEN, EMPTY_THOUGHT, THINK_OPEN
from transforms.engines.protocol import Completion, Continuation, VerdictEngine, open_prompts
from transforms.engines.served_head import category_readout
from transforms.judging.calibration import sigmoid
from transforms.judging.decisions import (
    REASONED_MODES,
    Judgement,
    JudgeRequest,
    JudgeSettings,
    judge_reasoned,
    p_unsafe_from_logprobs,
)
from transforms.judging.phase_tokens import CATEGORY_TOKENS, categories_suffix
from transforms.judging.verdict_parsing import VERDICTS, parse_categories
from transforms.prompts.render import conversation_block


@dataclasses.dataclass(frozen=True)
class BoxScore:
    """Cascade pass 1's answer for one request: the probe that holds its prompt, P(unsafe) at the box, and the
    category heads' scores (code, P) for the codes its policy has."""

    probe: Completion
    p_unsafe: float
    category_scores: tuple[tuple[str, float], ...] = ()


def judge_batch(engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings) -> list[Judgement]:
    """Judge a batch in the run's verdict mode: every engine call covers the batch (or the part that needs it)."""
    head = getattr(engine, "decision_head", None) is not None
    mode = settings.verdict_mode
    if mode in REASONED_MODES and not head:
        return judge_reasoned(engine, requests, settings)
    scored = score_without_reasoning(engine, requests)
    if mode == "score":
        judgements = [_scored(box, "head" if head else "score") for box in scored]
    elif not head:
        judgements = _score_cascade(engine, requests, settings, scored)
    elif mode == "cascade":
        bands = [r.cascade_band or settings.cascade_band for r in requests]
        traced = [
            i
            for i, (box, band) in enumerate(zip(scored, bands, strict=True))
            if _in_band(box.p_unsafe, band) or box.p_unsafe >= settings.threshold
        ]
        judgements = _head_decides(engine, requests, settings, scored, traced, "auto")
    else:  # a reasoned mode with a head: every unit traced in that mode, the head decides
        judgements = _head_decides(engine, requests, settings, scored, range(len(requests)), mode)
    return _add_box_categories(engine, requests, settings, scored, judgements)


def score_without_reasoning(engine: VerdictEngine, requests: Sequence[JudgeRequest]) -> list[BoxScore]:
    """Cascade pass 1: P(unsafe) at the box right after an empty thought, for every request (and, from an engine
    serving category heads, their scores, in the same request).

    The probes are handles on the prompts (`transforms.engines.protocol.open_prompts`: the vLLM engine serving a
    pooled head generates nothing for them). Their text is dropped (`keep_chars=0`) before the box is scored.
    """
    head = getattr(engine, "decision_head", None)
    codes = head.category_codes if head is not None else ()
    prompts = [r.prompt for r in requests]
    probes = open_prompts(engine, prompts, THINK_OPEN)
    choices = [*VERDICTS, *(category_readout(code) for code in codes)]
    scores = engine.continuation_logprobs([Continuation(c, 0, EMPTY_THOUGHT) for c in probes], choices)
    prior = getattr(head, "text_prior", None)
    if prior is None:
        p_unsafe = [p_unsafe_from_logprobs(s) for s in scores]
    else:  # the head's log-odds, stacked with the text prior's reading of the conversation block
        texts = [conversation_block(r.prompt) for r in requests]
        p_unsafe = [sigmoid(z) for z in prior.stacked_log_odds([s["unsafe"] - s["safe"] for s in scores], texts)]
    return [
        BoxScore(probe, p, category_scores_from_logprobs(s, r.allowed_codes, codes))
        for probe, p, s, r in zip(probes, p_unsafe, scores, requests, strict=True)
    ]


def category_scores_from_logprobs(
    logprobs: dict[str, float], allowed_codes: Sequence[str], head_codes: Sequence[str]
) -> tuple[tuple[str, float], ...]:
    """(code, sigmoid(read-out − safe)) for each code of the policy (`allowed_codes`, in its order) that has a
    category head; a code the policy lacks, or one without a head, gets no score."""
    with_head = set(head_codes)
    scores = []
    for code in allowed_codes:
        if code in with_head:
            readout = {"safe": logprobs["safe"], "unsafe": logprobs[category_readout(code)]}
            scores.append((code, p_unsafe_from_logprobs(readout)))
    return tuple(scores)


def _reason(
    engine: VerdictEngine,
    requests: Sequence[JudgeRequest],
    settings: JudgeSettings,
    indices: Sequence[int],
    mode: str = "auto",
) -> dict[int, Judgement]:
    """`mode` judgements (a reasoned mode) of the requests at `indices`."""
    if not indices:
        return {}
    reasoned = dataclasses.replace(settings, verdict_mode=mode)
    return dict(zip(indices, judge_reasoned(engine, [requests[i] for i in indices], reasoned), strict=True))


def _in_band(p: float, band: tuple[float, float]) -> bool:
    return band[0] <= p <= band[1]


def _scored(box: BoxScore, source: str) -> Judgement:
    return Judgement(
        outcome="unsafe" if box.p_unsafe >= 0.5 else "safe",
        verdict_source=source,
        p_unsafe=box.p_unsafe,
        reasoning="",
        raw_output="",
        finish_reason="score",
        prompt_tokens=box.probe.prompt_tokens,
        completion_tokens=0,
        token_budget=0,
        category_scores=box.category_scores,
    )


def _score_cascade(
    engine: VerdictEngine, requests: Sequence[JudgeRequest], settings: JudgeSettings, scored: Sequence[BoxScore]
) -> list[Judgement]:
    bands = [r.cascade_band or settings.cascade_band for r in requests]
    unsure = [i for i, (box, band) in enumerate(zip(scored, bands, strict=True)) if _in_band(box.p_unsafe, band)]
    reasoned = _reason(engine, requests, settings, unsure)
    judgements = []
    for index, box in enumerate(scored):
        if index in reasoned:
            judgements.append(
                dataclasses.replace(reasoned[index], score_p_unsafe=box.p_unsafe, category_scores=box.category_scores)
            )
        else:
            judgements.append(_scored(box, "score"))
    return judgements


def _head_decides(
    engine: VerdictEngine,
    requests: Sequence[JudgeRequest],
    settings: JudgeSettings,
    scored: Sequence[BoxScore],
    traced: Sequence[int],
    trace_mode: str,
) -> list[Judgement]:
    """The head's verdict for every unit; the units at `traced` also carry a `trace_mode` reasoning as their trace
    (its text, tokens and categories, and its own box's P(unsafe) as `trace_p_unsafe`, None where it wrote none)."""
    traces = _reason(engine, requests, settings, list(traced), trace_mode)
    judgements = []
    for index, box in enumerate(scored):
        decided = _scored(box, "head")
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


def _add_box_categories(
    engine: VerdictEngine,
    requests: Sequence[JudgeRequest],
    settings: JudgeSettings,
    scored: Sequence[BoxScore],
    judgements: list[Judgement],
) -> list[Judgement]:
    """With the categories template, phase 3 for every unit decided unsafe (P(unsafe) >= the threshold) that has
    no listed categories yet: the model continues after the empty thought, an `unsafe` box and the `Categories:`
    cue, as forced mode's phase 3 does after a thought. Codes are kept only if the tenant's policy has them."""
    if not settings.extract_categories:
        return judgements
    wanted = [
        i
        for i, j in enumerate(judgements)
        if j.p_unsafe is not None and j.p_unsafe >= settings.threshold and not j.categories and not j.unknown_categories
    ]
    if not wanted:
        return judgements
    continuations = [Continuation(scored[i].probe, 0, categories_suffix(EMPTY_THOUGHT)) for i in wanted]
    texts = engine.continue_text(continuations, settings.sampling, CATEGORY_TOKENS, stop=["\n"])
    for i, text in zip(wanted, texts, strict=True):
        known, unknown = parse_categories(categories_suffix(BOX_OPEN) + text, requests[i].allowed_codes)
        judgements[i] = dataclasses.replace(judgements[i], categories=tuple(known), unknown_categories=tuple(unknown))
    return judgements
