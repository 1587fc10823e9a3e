"""Where a cascade's engine time goes, phase by phase, for one guard: score pass, traces, the trace's box read.

    python benchmarks/cascade_phases.py [--model embedded:guard|embedded:lora|FOLDER] [--prompts 40] [--max-tokens 96]

Renders the first `--prompts` sample conversations (`samples/logs/conversations-*.parquet`, their first user and
assistant messages, prompt level, each tenant's policy), starts the engine (`VllmEngineSpec`), then times: the score
pass (`score_without_reasoning`) cold and warm, `--max-tokens` traces after an opened thought (`complete`), and the
head's read of each trace's own box (`continuation_logprobs`). Prints seconds per phase and the generated tokens.
Used in BENCHMARKS.md §12b to compare a pooled head (two engines) with a folded one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_prompts(count: int) -> list[str]:
    import polars as pl

    from policies import load_policy_registry
    from transforms.prompts.render import render_prompt
    from transforms.records import Message

    registry = load_policy_registry()
    prompts = []
    for path in sorted((ROOT / "samples" / "logs").glob("conversations-*.parquet")):
        for row in pl.read_parquet(path).iter_rows(named=True):
            messages = [Message(m["role"], m["content"]) for m in row["messages"] if m["role"] in ("user", "assistant")]
            if messages:
                prompts.append(render_prompt(registry.for_tenant(row["tenant_id"]), messages[:2], "prompt"))
    return prompts[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="the engine's --model (default: the embedded guard)")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args(argv)

    from transforms.engines.chat_format import THINK_OPEN
    from transforms.engines.protocol import Continuation, SamplingSettings
    from transforms.engines.vllm_engine import VllmEngineSpec
    from transforms.judging.cascade import score_without_reasoning
    from transforms.judging.decisions import JudgeRequest

    requests = [JudgeRequest(p) for p in sample_prompts(args.prompts)]
    started = time.monotonic()
    engine = VllmEngineSpec(model=args.model).load()
    print(f"engine start {time.monotonic() - started:.1f} s ({engine.model_name})")
    for label in ("cold", "warm"):
        started = time.monotonic()
        score_without_reasoning(engine, requests)
        print(f"score pass ({label}) {time.monotonic() - started:.1f} s for {len(requests)} prompts")
    sampling = SamplingSettings(max_tokens=args.max_tokens)
    started = time.monotonic()
    traces = engine.complete([r.prompt for r in requests], sampling, [args.max_tokens] * len(requests),
                             assistant_prefix=THINK_OPEN)  # fmt: skip
    tokens = sum(t.completion_tokens for t in traces)
    print(f"traces {time.monotonic() - started:.1f} s, {tokens} generated tokens")
    started = time.monotonic()
    boxes = [Continuation(t, len(t.text), "\n</think>\n\\boxed{") for t in traces]
    engine.continuation_logprobs(boxes, ["safe", "unsafe"])
    print(f"box read {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    code = main()
    from transforms.engines.offline_exit import exit_after_offline_engine

    exit_after_offline_engine(code)
