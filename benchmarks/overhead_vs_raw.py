"""What the Beam pipeline costs on top of the bare vLLM engine, on the real embedded model.

    .venv/bin/python benchmarks/overhead_vs_raw.py [--n 200] [--max-tokens 64] [--repeat 2] [--out results/ovr.json]

N synthetic conversations over the four shipped tenants are written to a Parquet log. One engine is started (timed
on its own) and shared, as the pipeline's DoFns share it, by the measurements, each on an emptied prefix cache:
  (a)  raw: the pipeline's prompts (same reader, policies, rendering, de-duplication by content key), chat-templated
       and sent to `LLM.generate` in ONE call, max_tokens N, temperature 0;
  (a') raw + scoring: the same prompts through `cascade.judge_batch` in one batch (the free-mode work the job does:
       generation plus the P(unsafe) scoring pass on each boxed answer, and with the embedded guard's decision head
       its score pass), still without Beam;
  (a'') (a) in the job's engine calls (its batcher: full calls of one policy, then the tail in policy order);
  (b)  the whole job on the FnApiRunner, Parquet in → partitions out, `--verdict-mode free --max-tokens N`.
(a) and (b) alternate `--repeat` times and the fastest of each counts (other work shares the machine). Also
reported: CPU seconds of this process and the engine's processes per measurement (less sensitive to that load).
Ratios b/a and b/a' with engine start excluded and included (start + run). Target: b/a <= 1.10.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

if TYPE_CHECKING:
    from transforms.judging.decisions import Judgement

TARGET_RATIO = 1.10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="conversations")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256, help="the job's --batch-size (its default)")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of (a) and (b); the fastest counts")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--smoke", action="store_true", help="tiny run (2 conversations, 4 tokens, once)")
    parser.add_argument("--workdir", help="where the log and the job output go (default: temporary)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.max_tokens, args.repeat = 2, 4, 1
    return args


class _Measure:
    """Wall seconds and CPU seconds (this process + the engine's processes) of a block."""

    def __enter__(self):
        self.load = common.load()
        self._cpu, self._own, self._wall = common.tree_cpu_seconds(), common.cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = round(time.perf_counter() - self._wall, 2)
        self.cpu = round(common.tree_cpu_seconds() - self._cpu, 2)
        self.own = round(common.cpu_seconds() - self._own, 2)

    def as_dict(self) -> dict:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "this_process_cpu_s": self.own, "load": self.load}


def _read_own_box(judgement: Judgement) -> bool:
    """The model's own box was read: its P(unsafe), or, where a decision head decided, its trace's."""
    own = judgement.trace_p_unsafe if judgement.verdict_source == "head" else judgement.p_unsafe
    return own is not None


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.quiet_logs()
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipelines.job.moderate import run
    from transforms.engines.embedded_model import EMBEDDED_MODEL_NAME
    from transforms.engines.protocol import SamplingSettings
    from transforms.engines.vllm_engine import VllmEngineSpec
    from transforms.judging.batching import BatchPerKeyDoFn
    from transforms.judging.cascade import judge_batch
    from transforms.judging.decisions import JudgeRequest, JudgeSettings

    result = common.header("overhead_vs_raw", vars(args))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rsafe-overhead-"))
    raw_runs, scored_runs, batched_runs, pipeline_runs = [], [], [], []
    try:
        log = common.write_log(common.synthetic_rows(args.n, args.seed), workdir / "logs" / "logs.parquet")
        spec = VllmEngineSpec()
        holder, start_s = common.start_engine(spec)
        engine, llm = holder.engine, holder.engine._llm
        units = common.unique_by_content(common.rendered_units(log, spec.load_token_counter(), EMBEDDED_MODEL_NAME))
        prompts = [u.prompt for u in units]
        engine.complete(prompts[:2], SamplingSettings(max_tokens=4), [4] * len(prompts[:2]))  # first-call set-up
        tokenizer = llm.get_tokenizer()

        def raw() -> list:
            chats = [[{"role": "user", "content": p}] for p in prompts]
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
            ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
            params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
            return llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)

        def raw_in_job_batches() -> None:
            """(a'') (a) sent as the job sends it: the job's batcher (full calls of one policy, then the tail in
            policy order), each call sorted by (policy version, content key), one call after another."""
            params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
            batcher = BatchPerKeyDoFn(args.batch_size)
            batcher.start_bundle()
            calls = [call for u in units for call in batcher.process((u.policy_version, u))]
            calls += [windowed.value for windowed in batcher.finish_bundle()]
            for call in calls:
                ordered = sorted(call, key=lambda u: (u.policy_version, u.content_key))
                chunk = [engine._prompt_ids(u.prompt, "") for u in ordered]
                llm.generate([TokensPrompt(prompt_token_ids=i) for i in chunk], params, use_tqdm=False)

        def pipeline(attempt: int):
            output = workdir / f"out-{attempt}"
            argv = ["--input", str(log), "--output", str(output), "--verdict-mode", "free"]
            argv += ["--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
            return run(argv, engine_spec=spec), common.verdict_rows(output)

        for attempt in range(args.repeat):
            common.reset_prefix_cache(engine)
            with _Measure() as m:
                outputs = raw()
            raw_runs.append(m.as_dict())
            common.reset_prefix_cache(engine)
            with _Measure() as m:
                manifest, rows = pipeline(attempt)
            pipeline_runs.append(m.as_dict())
            if attempt == 0:  # (a') once: it is (a) plus the scoring pass, for reading the ratios
                common.reset_prefix_cache(engine)
                settings = JudgeSettings(verdict_mode="free", sampling=SamplingSettings(max_tokens=args.max_tokens))
                requests = [JudgeRequest(u.prompt, u.reasoning_budget, u.allowed_codes) for u in units]
                with _Measure() as m:
                    judgements = judge_batch(engine, requests, settings)
                scored_runs.append(m.as_dict())
                common.reset_prefix_cache(engine)
                with _Measure() as m:
                    raw_in_job_batches()
                batched_runs.append(m.as_dict())
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    raw_s = min(r["wall_s"] for r in raw_runs)
    pipeline_s = min(r["wall_s"] for r in pipeline_runs)
    scored_s = scored_runs[0]["wall_s"]
    raw_cpu = min(r["cpu_s"] for r in raw_runs)
    pipeline_cpu = min(r["cpu_s"] for r in pipeline_runs)
    result.update(
        conversations=args.n,
        units=manifest.totals.get("units_made", 0),
        unique_prompts=len(prompts),
        prompt_tokens=sum(len(o.prompt_token_ids) for o in outputs),
        raw_completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
        boxed_answers=sum(_read_own_box(j) for j in judgements),
        verdicts_written=len(rows),
        engine_start_s=round(start_s, 2),
        raw_runs=raw_runs,
        raw_scored_runs=scored_runs,
        raw_in_job_batches_runs=batched_runs,
        raw_in_job_batches_s=batched_runs[0]["wall_s"],
        ratio_vs_job_batches_excl_start=round(pipeline_s / batched_runs[0]["wall_s"], 3),
        pipeline_runs=pipeline_runs,
        raw_s=raw_s,
        raw_scored_s=scored_s,
        pipeline_s=pipeline_s,
        ratio_excl_start=round(pipeline_s / raw_s, 3),
        ratio_incl_start=round((pipeline_s + start_s) / (raw_s + start_s), 3),
        ratio_vs_scored_excl_start=round(pipeline_s / scored_s, 3),
        ratio_vs_scored_incl_start=round((pipeline_s + start_s) / (scored_s + start_s), 3),
        cpu_ratio=round(pipeline_cpu / raw_cpu, 3) if raw_cpu else None,
        target_ratio=TARGET_RATIO,
        load_end=common.load(),
    )
    result["target_met"] = result["ratio_excl_start"] <= TARGET_RATIO
    header = ["engine start s", "raw (a) s", "raw+scoring (a') s", "raw in job batches (a'') s", "pipeline (b) s",
              "b/a excl. start", "b/a incl. start", "b/a' excl.", "b/a'' excl.", "CPU-s b/a", "load (1m)"]  # fmt: skip
    keys = ["engine_start_s", "raw_s", "raw_scored_s", "raw_in_job_batches_s", "pipeline_s", "ratio_excl_start"]
    keys += ["ratio_incl_start", "ratio_vs_scored_excl_start", "ratio_vs_job_batches_excl_start", "cpu_ratio"]
    loads = "/".join(str(r["load"][0]) for r in raw_runs + pipeline_runs)
    print(common.markdown_table(header, [[*(result[k] for k in keys), loads]]))
    print(f"\n{args.n} conversations → {result['units']} units, {len(prompts)} unique prompts; target b/a <= 1.10")
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
