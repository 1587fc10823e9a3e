"""Units → verdicts: `decisions` (rendered prompts → judgements, engine-agnostic and pure), `cascade` (the verdict
modes as engine calls), `verdict_parsing` (model output → outcome), `phase_tokens`, `calibration`, `run_context`,
`verdict_rows` (a judged unit → its output row), the judge step's memory (`judgement_memo`, the cross-night
`verdict_cache`) and the judging DoFn itself (`judge_dofn`, with `batching` and `batch_heartbeat`). The top of
`transforms`: it may import every other sub-package, none imports it.
"""
