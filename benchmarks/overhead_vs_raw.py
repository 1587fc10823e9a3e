"""What the Beam pipeline costs on top of the bare vLLM engine, on the real embedded model.

    .venv/bin/python benchmarks/overhead_vs_raw.py [--n 200] [--max-tokens 64] [--out results/overhead.json]

N synthetic conversations over the four shipped tenants are written to a Parquet log. One engine is started (timed
on its own) and shared, as the pipeline's DoFns share it, by three measurements, each on an emptied prefix cache:
  (a)  raw: the pipeline's prompts (same reader, policies, rendering, de-duplication by content key), chat-templated
       and sent to `LLM.generate` in ONE call, max_tokens N, temperature 0;
  (a') raw + scoring: the same prompts through `judging.judge_batch` in one batch (the free-mode work the job does:
       generation plus the P(unsafe) scoring pass on each boxed answer), still without Beam;
  (b)  the whole job on the FnApiRunner, Parquet in → partitions out, `--verdict-mode free --max-tokens N`.
Reported: b/a and b/a' with engine start excluded and included (start + run). Target: b/a <= 1.10.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_RATIO = 1.10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="conversations")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="the job's --batch-size")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--smoke", action="store_true", help="tiny run (8 conversations, 8 tokens)")
    parser.add_argument("--workdir", help="where the log and the job output go (default: temporary)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.max_tokens = 8, 8
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.quiet_logs()
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipelines.embedded_model import EMBEDDED_MODEL_NAME
    from pipelines.moderate import run
    from transforms.engine import SamplingSettings
    from transforms.judging import JudgeSettings, judge_batch
    from transforms.vllm_engine import VllmEngineSpec

    result = common.header("overhead_vs_raw", vars(args))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsafe-overhead-"))
    try:
        log = common.write_log(common.synthetic_rows(args.n, args.seed), workdir / "logs" / "logs.parquet")
        spec = VllmEngineSpec()
        holder, start_s = common.start_engine(spec)
        engine = holder.engine
        units = common.unique_by_content(common.rendered_units(log, spec.load_token_counter(), EMBEDDED_MODEL_NAME))
        prompts = [u.prompt for u in units]
        engine.complete(prompts[:2], SamplingSettings(max_tokens=4), [4, 4])  # warm-up: first-call set-up

        common.reset_prefix_cache(engine)
        load_a = common.load()
        started = time.perf_counter()
        tokenizer = engine._llm.get_tokenizer()
        ids = [
            tokenizer.encode(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                ),
                add_special_tokens=False,
            )
            for p in prompts
        ]
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
        outputs = engine._llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        raw_s = time.perf_counter() - started
        raw_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)

        common.reset_prefix_cache(engine)
        settings = JudgeSettings(verdict_mode="free", sampling=SamplingSettings(max_tokens=args.max_tokens))
        started = time.perf_counter()
        judgements = judge_batch(engine, [_request(u) for u in units], settings)
        scored_s = time.perf_counter() - started
        boxed = sum(j.verdict_source == "model" for j in judgements)

        common.reset_prefix_cache(engine)
        output = workdir / "out"
        shutil.rmtree(output, ignore_errors=True)
        argv = ["--input", str(log), "--output", str(output), "--verdict-mode", "free"]
        argv += ["--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
        load_b = common.load()
        started = time.perf_counter()
        manifest = run(argv, engine_spec=spec)
        pipeline_s = time.perf_counter() - started
        rows = common.verdict_rows(output)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    result.update(
        conversations=args.n,
        units=manifest.totals.get("units_made", 0),
        unique_prompts=len(prompts),
        prompt_tokens=sum(len(i) for i in ids),
        raw_completion_tokens=raw_tokens,
        boxed_answers=boxed,
        verdicts_written=len(rows),
        engine_start_s=round(start_s, 2),
        raw_s=round(raw_s, 2),
        raw_scored_s=round(scored_s, 2),
        pipeline_s=round(pipeline_s, 2),
        ratio_excl_start=round(pipeline_s / raw_s, 3),
        ratio_incl_start=round((pipeline_s + start_s) / (raw_s + start_s), 3),
        ratio_vs_scored_excl_start=round(pipeline_s / scored_s, 3),
        ratio_vs_scored_incl_start=round((pipeline_s + start_s) / (scored_s + start_s), 3),
        target_ratio=TARGET_RATIO,
        load_raw=load_a,
        load_pipeline=load_b,
        load_end=common.load(),
    )
    result["target_met"] = result["ratio_excl_start"] <= TARGET_RATIO
    header = ["engine start s", "raw (a) s", "raw+scoring (a') s", "pipeline (b) s", "b/a excl. start",
              "b/a incl. start", "b/a' excl.", "b/a' incl.", "load (1m)"]  # fmt: skip
    row = [result[k] for k in ("engine_start_s", "raw_s", "raw_scored_s", "pipeline_s", "ratio_excl_start",
                               "ratio_incl_start", "ratio_vs_scored_excl_start", "ratio_vs_scored_incl_start")]  # fmt: skip
    print(common.markdown_table(header, [[*row, f"{load_a[0]}→{result['load_end'][0]}"]]))
    print(
        f"\n{args.n} conversations → {len(prompts)} unique prompts, {result['units']} units; target b/a <= {TARGET_RATIO}"
    )
    common.write_json(args.out, result)
    return result


def _request(unit):
    from transforms.judging import JudgeRequest

    return JudgeRequest(unit.prompt, unit.reasoning_budget, unit.allowed_codes)


if __name__ == "__main__":
    main()
