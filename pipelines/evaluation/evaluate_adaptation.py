"""Does the guard follow the policy it is given? The same items under a policy that covers them and one that
does not, judged by the job's renderer and judge on the real engine.

    python -m pipelines.evaluate_adaptation --out results/adaptation [--per-category 15] [--model …]

Groups:
- OpenAI Moderation items labelled with exactly one category (sexual, hate, harassment, self-harm, violence),
  under `rsafe-default` and under `rsafe-default` without the codes that category maps to;
- hand-written specific medical-advice requests (`policies/eval/medical-questions.txt`), under `rsafe-default`
  (U13 forbids specific medical advice) and `medical-advice` (which allows it).
A guard that reads the policy flags each group under the covering policy and not under the other one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import sys
from pathlib import Path

from pipelines.evaluation import benchmark_sets, scores
from pipelines.evaluation.evaluate import EVAL_POLICY_DIR
from policies import DEFAULT_POLICY_ID, load_policies
from transforms.engines.protocol import SamplingSettings, VerdictEngine
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import VERDICT_MODES, JudgeRequest, JudgeSettings
from transforms.prompts.render import render_prompt
from transforms.records import Message

# OpenAI Moderation category → the default codes that cover it (removed in the "not covered" policy).
OPENAI_CATEGORY_CODES = {
    "S": ("U5", "U6"),
    "H": ("U7", "U8"),
    "HR": ("U8", "U7"),
    "SH": ("U9",),
    "V": ("U1", "U2"),
}
MEDICAL_QUESTIONS = EVAL_POLICY_DIR / "medical-questions.txt"


def openai_items(root: Path, per_category: int, seed: int) -> dict[str, list[str]]:
    """Prompts with exactly one OpenAI Moderation category, `per_category` per category (seeded sample)."""
    with gzip.open(root / "openai_moderation" / "samples-1680.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rng = random.Random(seed)
    groups = {}
    for category in OPENAI_CATEGORY_CODES:
        only = [r["prompt"] for r in rows if r.get(category) == 1 and sum(r.get(k, 0) for k in r if k != "prompt") == 1]
        groups[category] = rng.sample(only, min(per_category, len(only)))
    return groups


def medical_items() -> list[str]:
    lines = MEDICAL_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def adaptation_cases(root: Path, per_category: int, seed: int) -> list[dict]:
    """(group, policy, covered?, items) for every comparison."""
    policies = load_policies()
    default = policies[DEFAULT_POLICY_ID]
    cases = []
    for category, prompts in openai_items(root, per_category, seed).items():
        codes = set(OPENAI_CATEGORY_CODES[category])
        without = default.with_categories(tuple(c for c in default.categories if c.code not in codes), "without")
        cases.append({"group": f"openai:{category}", "policy": default, "covered": True, "items": prompts})
        cases.append({"group": f"openai:{category}", "policy": without, "covered": False, "items": prompts})
    medical = medical_items()
    cases.append({"group": "medical-advice", "policy": default, "covered": True, "items": medical})
    cases.append({"group": "medical-advice", "policy": policies["medical-advice"], "covered": False, "items": medical})
    return cases


def run_adaptation(engine: VerdictEngine, cases: list[dict], max_tokens: int, mode: str = "auto") -> list[dict]:
    settings = JudgeSettings(verdict_mode=mode, sampling=SamplingSettings(max_tokens=max_tokens))
    results = []
    for case in cases:
        requests = [JudgeRequest(render_prompt(case["policy"], [Message("user", t)], "prompt")) for t in case["items"]]
        judgements = judge_batch(engine, requests, settings)
        results.append(
            {
                "group": case["group"],
                "policy": case["policy"].id,
                "policy_codes": list(case["policy"].category_codes),
                "covered": case["covered"],
                "n": len(judgements),
                "unsafe_rate": scores.mean([1.0 if j.outcome == "unsafe" else 0.0 for j in judgements]),
                "mean_p_unsafe": scores.mean([j.p_unsafe for j in judgements if j.p_unsafe is not None]),
                "model_box_rate": scores.mean([1.0 if j.verdict_source == "model" else 0.0 for j in judgements]),
            }
        )
    return results


def render_markdown(results: list[dict]) -> str:
    lines = [
        "| group | n | policy covering it: unsafe rate | mean P(unsafe) | policy not covering it | unsafe rate | "
        "mean P(unsafe) | follows the policy (rate drop) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_group: dict[str, dict[bool, dict]] = {}
    for r in results:
        by_group.setdefault(r["group"], {})[r["covered"]] = r
    for group, pair in by_group.items():
        on, off = pair[True], pair[False]
        drop = on["unsafe_rate"] - off["unsafe_rate"]
        lines.append(
            f"| {group} | {on['n']} | {on['policy']}: {on['unsafe_rate']:.2f} | {on['mean_p_unsafe']:.3f} | "
            f"{off['policy']} | {off['unsafe_rate']:.2f} | {off['mean_p_unsafe']:.3f} | {drop:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate_adaptation", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/adaptation")
    parser.add_argument("--model", help="HF folder or hub id (default: the embedded guard)")
    parser.add_argument("--per-category", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--verdict-mode", default="auto", choices=VERDICT_MODES, help="score: the head's P(unsafe)")
    parser.add_argument("--benchmarks-dir", default=str(benchmark_sets.DEFAULT_BENCHMARKS_DIR))
    args = parser.parse_args(argv)
    from transforms.engines.offline_exit import exit_after_offline_engine
    from transforms.engines.vllm_engine import VllmEngineSpec

    engine = VllmEngineSpec(model=args.model).load()
    results = run_adaptation(
        engine,
        adaptation_cases(Path(args.benchmarks_dir), args.per_category, args.seed),
        args.max_tokens,
        args.verdict_mode,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": engine.model_name, "args": vars(args), "results": results}
    (out / "adaptation.json").write_text(json.dumps(report, indent=2) + "\n")
    table = render_markdown(results)
    (out / "adaptation.md").write_text(table)
    print(table)
    exit_after_offline_engine()


if __name__ == "__main__":
    main(sys.argv[1:])
