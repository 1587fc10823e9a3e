"""Serving cost of the embedded guard: base model vs trained guard (merged) vs base + LoRA adapter in vLLM.

    .venv/bin/python benchmarks/guard_serving.py [--n 96] [--max-tokens 256] [--out FILE.json]

The same N benchmark prompts (held-out sets, prompt and response level, rendered by the job under the eval
policies) go through `decisions.judge_reasoned` in `auto` mode (the model's own box), one batch, greedy, on each
variant in its own subprocess (engine start timed apart): (1) the untrained base, (2) the trained guard merged into
one folder (what the job serves), (3) the base with the committed adapter loaded by vLLM (`enable_lora` +
`LoRARequest`). Reported: wall and CPU seconds per unit, generated tokens per unit, share of units answered with the
model's own box, share forced. Decides merged vs LoRA serving (the faster one is the default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

VARIANTS = ("base", "merged", "lora")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=96, help="units (half prompt-level, half response-level)")
    parser.add_argument("--max-tokens", type=int, default=256, help="the job's default --max-tokens")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--smoke", action="store_true", help="tiny run (4 units, 8 tokens, merged only)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.max_tokens, args.variants = 4, 8, "merged"
    return args


def benchmark_prompts(n: int) -> list[str]:
    """N rendered RSafe prompts from held-out sets (never training data), half per level."""
    from pipelines.evaluation import benchmark_sets
    from policies import load_policies
    from transforms.prompts.render import render_prompt
    from transforms.records import Message

    policy = load_policies()["rsafe-default"]
    prompts = []
    for name, count in (("toxicchat", n // 2), ("beavertails", n - n // 2)):
        for item in benchmark_sets.load_set(name, str(benchmark_sets.DEFAULT_BENCHMARKS_DIR), count, 0):
            messages = [Message("user", item.prompt)]
            level = "prompt"
            if item.response is not None:
                messages.append(Message("assistant", item.response))
                level = "response"
            prompts.append(render_prompt(policy, messages, level))
    return prompts


def run_variant(variant: str, n: int, max_tokens: int) -> dict:
    """One variant in this process: start the engine, judge the prompts once, report."""
    from transforms.engines.embedded_model import GUARD_ADAPTER_DIR, ensure_embedded_guard, ensure_embedded_model
    from transforms.engines.protocol import SamplingSettings
    from transforms.engines.vllm_engine import VllmEngine, VllmEngineSpec
    from transforms.judging.decisions import JudgeRequest, JudgeSettings, judge_reasoned

    prompts = benchmark_prompts(n)
    started = time.perf_counter()
    if variant == "lora":
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        llm = LLM(
            model=ensure_embedded_model(),
            dtype="float32",
            max_model_len=4096,
            enforce_eager=True,
            enable_prefix_caching=True,
            block_size=32,
            kv_cache_memory_bytes=1 << 30,
            enable_lora=True,
            max_lora_rank=16,
            max_loras=1,
        )
        request = LoRARequest("rsafe-guard", 1, str(GUARD_ADAPTER_DIR))
        _generate = llm.generate
        llm.generate = lambda *a, **k: _generate(*a, **{**k, "lora_request": request})  # every call uses the adapter
        engine = VllmEngine(llm, "base+lora", 4096)
    else:
        model = ensure_embedded_model() if variant == "base" else ensure_embedded_guard()
        engine = VllmEngineSpec(model=model, dtype="float32").load()
    start_s = time.perf_counter() - started
    settings = JudgeSettings(verdict_mode="auto", sampling=SamplingSettings(max_tokens=max_tokens))
    requests = [JudgeRequest(p) for p in prompts]
    with common.Stopwatch() as sw:
        cpu0 = common.tree_cpu_seconds()
        judgements = judge_reasoned(engine, requests, settings)
        cpu = common.tree_cpu_seconds() - cpu0
    units = len(judgements)
    return {
        "variant": variant,
        "units": units,
        "engine_start_s": round(start_s, 1),
        "wall_s": round(sw.wall, 2),
        "wall_s_per_unit": round(sw.wall / units, 3),
        "cpu_s_per_unit": round(cpu / units, 3),
        "completion_tokens_per_unit": round(sum(j.completion_tokens for j in judgements) / units, 1),
        "model_box_rate": round(sum(j.verdict_source == "model" for j in judgements) / units, 3),
        "forced_rate": round(sum(j.verdict_source == "forced" for j in judgements) / units, 3),
        "load": common.load(),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args.n, args.max_tokens)))
        return
    result = common.header("guard_serving", vars(args))
    result["variants"] = []
    for variant in args.variants.split(","):
        command = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--n",
            str(args.n),
            "--max-tokens",
            str(args.max_tokens),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        result["variants"].append(json.loads(line.removeprefix("RESULT ")))
    rows = [
        [
            v["variant"],
            v["units"],
            v["engine_start_s"],
            v["wall_s_per_unit"],
            v["cpu_s_per_unit"],
            v["completion_tokens_per_unit"],
            v["model_box_rate"],
            v["forced_rate"],
            v["load"][0],
        ]
        for v in result["variants"]
    ]
    header = [
        "variant",
        "units",
        "engine start s",
        "wall s/unit",
        "CPU s/unit",
        "gen tokens/unit",
        "own box",
        "forced",
        "load",
    ]
    print(common.markdown_table(header, rows))
    common.write_json(args.out, result)


if __name__ == "__main__":
    main()
