"""What the forced verdict (phase 2) costs on top of phase 1, and how the two ways of forcing it compare.

Phase 1: N RSafe prompts (sample-log conversations, shipped policies) reason after an opened `<think>` within a
budget. Phase 2, measured on the same phase-1 outputs:
- `scoring` (what the job does): teacher-forced single-token requests scoring `safe}` / `unsafe}` as full
  continuations (`logprob_token_ids`), on the exact phase-1 token sequence (prefix cache);
- `choice`: vLLM structured outputs with `choice=["safe", "unsafe"]` on the same contexts.
Reports wall times, the phase-2/phase-1 ratio, the share of phase-2 prompt tokens served from the prefix cache,
and how often the choice pick agrees with the more probable full continuation.

    python benchmarks/phase2_cost.py --n 64 --budget 64 --out results/phase2.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header, markdown_table, quiet_logs, write_json


def _prompts(n: int, count_tokens) -> list[str]:
    from policies import load_policy_registry
    from scripts.generate_sample_logs import generate_conversations
    from transforms.prompts.units import make_units
    from transforms.records import Conversation, Message

    registry = load_policy_registry()
    prompts: list[str] = []
    for row in generate_conversations(n, seed=11):
        conversation = Conversation(
            row["conversation_id"],
            row["tenant_id"],
            row["created_at"],
            tuple(Message(m["role"], m["content"]) for m in row["messages"]),
            "bench",
            0,
        )
        policy = registry.for_tenant(row["tenant_id"])
        prompts += [u.prompt for u in make_units(conversation, policy, "rsafe", "m", count_tokens)]
    return prompts[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="units (prompts)")
    parser.add_argument("--budget", type=int, default=64, help="phase-1 reasoning tokens")
    parser.add_argument("--block-size", type=int, default=None, help="KV block size (default: the job's)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (4 prompts, budget 8)")
    parser.add_argument("--out", help="JSON results path")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.budget = 4, 8
    quiet_logs()

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import StructuredOutputsParams

    from transforms.engines.protocol import Continuation, SamplingSettings
    from transforms.engines.vllm_engine import VllmEngineSpec
    from transforms.judging.decisions import THINK_CLOSE, THINK_OPEN, p_unsafe_from_logprobs, verdict_opening

    spec = VllmEngineSpec() if args.block_size is None else VllmEngineSpec(block_size=args.block_size)
    started = time.perf_counter()
    engine = spec.load()
    start_s = time.perf_counter() - started
    prompts = _prompts(args.n, spec.load_token_counter())
    engine.complete(prompts[:2], SamplingSettings(), [4, 4])  # warm-up: first-call kernel set-up

    started = time.perf_counter()
    completions = engine.complete(
        prompts, SamplingSettings(), [args.budget] * len(prompts), assistant_prefix=THINK_OPEN, stop=[THINK_CLOSE]
    )
    phase1_s = time.perf_counter() - started
    continuations = [Continuation(c, *verdict_opening(c.text)) for c in completions]

    started = time.perf_counter()
    scores = engine.continuation_logprobs(continuations, ("safe", "unsafe"))
    scoring_s = time.perf_counter() - started
    p_unsafe = [p_unsafe_from_logprobs(s) for s in scores]

    contexts = [engine._context_ids(c) for c in continuations]  # the exact sequences phase 2 continues
    choice = SamplingParams(
        max_tokens=4, temperature=0.0, structured_outputs=StructuredOutputsParams(choice=["safe", "unsafe"])
    )
    started = time.perf_counter()
    outputs = engine._llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in contexts], choice, use_tqdm=False)
    choice_s = time.perf_counter() - started
    picks = [o.outputs[0].text.strip() for o in outputs]
    agree = sum((pick == "unsafe") == (p >= 0.5) for pick, p in zip(picks, p_unsafe, strict=True))
    cached = sum(o.num_cached_tokens or 0 for o in outputs)
    context_tokens = sum(len(ids) for ids in contexts)

    result = header("phase2_cost", vars(args))
    result.update(
        engine_start_s=round(start_s, 1),
        units=len(prompts),
        phase1_s=round(phase1_s, 2),
        phase1_completion_tokens=sum(c.completion_tokens for c in completions),
        scoring_s=round(scoring_s, 2),
        scoring_over_phase1=round(scoring_s / phase1_s, 3),
        choice_s=round(choice_s, 2),
        choice_over_phase1=round(choice_s / phase1_s, 3),
        phase2_cached_token_share=round(cached / context_tokens, 3),
        choice_agrees_with_scoring=f"{agree}/{len(prompts)}",
    )
    print(
        markdown_table(
            ["units", "phase 1 s", "scoring s (ratio)", "choice s (ratio)", "phase-2 cached share", "choice agrees"],
            [
                [
                    len(prompts),
                    result["phase1_s"],
                    f"{result['scoring_s']} ({result['scoring_over_phase1']})",
                    f"{result['choice_s']} ({result['choice_over_phase1']})",
                    result["phase2_cached_token_share"],
                    result["choice_agrees_with_scoring"],
                ]
            ],
        )
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
