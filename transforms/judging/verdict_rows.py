"""A judged unit → its output row (the tenant's decision included): one pure function."""

from __future__ import annotations

import datetime as dt

from transforms.judging.decisions import Judgement, consistency_flag, decide
from transforms.judging.run_context import RunContext
from transforms.records import ModerationUnit


def verdict_row(
    unit: ModerationUnit,
    judgement: Judgement,
    context: RunContext,
    processed_at: dt.datetime,
    deduplicated: bool,
    from_cache: bool = False,
) -> dict:
    """One output row: the unit, what the engine said, the tenant's decision, and how it was produced. With a
    calibration in the run context the decision is taken on the calibrated probability."""
    on_unparsed = unit.on_truncated if judgement.outcome == "truncated" else unit.on_parse_error
    calibration = context.calibration
    p_calibrated = calibration.apply(unit.tenant_id, judgement.p_unsafe) if calibration else None
    p_decided = judgement.p_unsafe if calibration is None else p_calibrated
    return {
        "conversation_id": unit.conversation_id,
        "tenant_id": unit.tenant_id,
        "date": unit.date,
        "unit": unit.unit,
        "turn_index": unit.turn_index,
        "verdict": decide(judgement.outcome, p_decided, context.settings, on_unparsed),
        "outcome": judgement.outcome,
        "verdict_source": judgement.verdict_source,
        "p_unsafe": judgement.p_unsafe,
        "p_calibrated": p_calibrated,
        "score_p_unsafe": judgement.score_p_unsafe,
        "trace_p_unsafe": judgement.trace_p_unsafe,
        "consistency": consistency_flag(judgement),
        "calibration_version": calibration.version if calibration else None,
        "categories": list(judgement.categories),
        "unknown_categories": list(judgement.unknown_categories),
        "category_scores": [{"code": code, "score": score} for code, score in judgement.category_scores],
        "reasoning": judgement.reasoning,
        "raw_output": judgement.raw_output,
        "finish_reason": judgement.finish_reason,
        "prompt_tokens": judgement.prompt_tokens,
        "completion_tokens": judgement.completion_tokens,
        "token_budget": judgement.token_budget,
        "truncated_input": unit.truncated_input,
        "context_turns_dropped": unit.context_turns_dropped,
        "input_repairs": list(unit.input_repairs),
        "deduplicated": deduplicated,
        "from_cache": from_cache,
        "model": context.model,
        "policy_id": unit.policy_id,
        "policy_version": unit.policy_version,
        "template_version": unit.template_version,
        "verdict_mode": context.settings.verdict_mode,
        "source_file": unit.source_file,
        "resume_key": unit.resume_key,
        "content_key": unit.content_key,
        "run_id": context.run_id,
        "processed_at": processed_at,
    }
