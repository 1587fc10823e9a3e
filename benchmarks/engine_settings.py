"""Engine settings on this CPU: compiled vs eager, engine-call batch size, max_num_seqs, and Beam multi-processing.

    .venv/bin/python benchmarks/engine_settings.py [--unique 32] [--requests 256] [--max-tokens 32] [--out s.json]

Engine part: each engine configuration runs in its own subprocess, one after the other; its start is timed, then
`--requests` requests cycled over `--unique` of the pipeline's prompts are decoded in engine calls of each batch
size. A warm pass first puts every prompt in the prefix cache, so the passes measure decoding (generated tokens per
second), which is where batching and compilation matter. Configurations (`--configs`):
  eager-256      enforce_eager=True,  max_num_seqs=256 (the job's defaults)
  compiled-256   enforce_eager=False, max_num_seqs=256 (torch.compile)
  eager-32       enforce_eager=True,  max_num_seqs=32
Pipeline part (`--pipeline-n` conversations, 0 to skip): the whole job on the real engine in the FnApiRunner's
default in-process mode vs `--direct_running_mode=multi_processing --direct_num_workers=2` (one engine per worker
process), each in a fresh subprocess, wall time including engine starts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

CONFIGS = {
    "eager-256": {"enforce_eager": True, "max_num_seqs": 256},
    "compiled-256": {"enforce_eager": False, "max_num_seqs": 256},
    "eager-32": {"enforce_eager": True, "max_num_seqs": 32},
    "eager-256-2cores": {"enforce_eager": True, "max_num_seqs": 256},
}
# Environment per configuration. vLLM's CPU backend binds the model's OpenMP threads to all cores but one, which it
# reserves for its scheduler process: on 2 cores the model computes on ONE core. "0-1" binds it to both.
CONFIG_ENV = {"eager-256-2cores": {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}}
MULTI_PROCESSING = "--direct_running_mode=multi_processing --direct_num_workers=2"
PIPELINE_MODES = [  # (label, job options, environment)
    ("in-process (default)", "", {}),
    ("in-process, engine on 2 cores", "", CONFIG_ENV["eager-256-2cores"]),
    ("multi_processing, 2 workers", MULTI_PROCESSING, {}),
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default="eager-256,eager-256-2cores,compiled-256,eager-32", help=f"of {sorted(CONFIGS)}"
    )
    parser.add_argument("--batch-sizes", default="16,64,256", help="prompts per engine call")
    parser.add_argument("--unique", type=int, default=32, help="distinct prompts")
    parser.add_argument("--requests", type=int, default=256, help="requests per pass (prompts cycled)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--pipeline-n", type=int, default=24, help="conversations for the pipeline part (0: skip)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--smoke", action="store_true", help="tiny run: eager-256 only, 4 requests, no pipeline part")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", choices=["engine", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-args", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.configs, args.batch_sizes, args.unique, args.requests = "eager-256", "4", 2, 4
        args.max_tokens, args.pipeline_n = 4, 0
    return args


def engine_child(args: argparse.Namespace) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from transforms.engines.embedded_model import EMBEDDED_MODEL_NAME
    from transforms.engines.vllm_engine import VllmEngineSpec

    spec = VllmEngineSpec(**CONFIGS[args.config])
    started = time.perf_counter()
    engine = spec.load()
    start_s = time.perf_counter() - started
    llm = engine._llm
    units = common.unique_by_content(common.rendered_units(args.log, spec.load_token_counter(), EMBEDDED_MODEL_NAME))
    prompts = [engine._prompt_ids(u.prompt, "") for u in units[: args.unique]]
    requests = [prompts[i % len(prompts)] for i in range(args.requests)]
    llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], SamplingParams(max_tokens=1), use_tqdm=False)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)  # fixed decode length
    passes = {}
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        load = common.load()
        cpu, started = common.tree_cpu_seconds(), time.perf_counter()
        generated = 0
        for first in range(0, len(requests), batch_size):
            batch = [TokensPrompt(prompt_token_ids=p) for p in requests[first : first + batch_size]]
            outputs = llm.generate(batch, params, use_tqdm=False)
            generated += sum(len(o.outputs[0].token_ids) for o in outputs)
        wall = time.perf_counter() - started
        passes[str(batch_size)] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(common.tree_cpu_seconds() - cpu, 2),
            "generated_tokens": generated,
            "decode_tokens_per_s": round(generated / wall, 1),
            "load": load,
        }
    return {
        "config": args.config,
        **CONFIGS[args.config],
        "env": CONFIG_ENV.get(args.config, {}),
        "engine_start_s": round(start_s, 2),
        "passes": passes,
    }


def pipeline_child(args: argparse.Namespace) -> dict:
    from pipelines.job.moderate import run

    output = Path(tempfile.mkdtemp(prefix="rsafe-settings-job-"))
    argv = ["--input", args.log, "--output", str(output / "out"), "--verdict-mode", "free"]
    argv += ["--max-tokens", str(args.max_tokens), *shlex.split(args.pipeline_args)]
    load = common.load()
    started = time.perf_counter()
    try:
        manifest = run(argv)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    return {
        "mode": args.pipeline_args or "in-process (default)",
        "wall_s_incl_engine_start": round(time.perf_counter() - started, 2),
        "units": manifest.totals.get("units_made", 0),
        "verdicts": manifest.totals.get("verdicts_written", 0),
        "load": load,
    }


def _run_child(kind: str, args: argparse.Namespace, log: Path, env: dict | None = None, **extra: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--log", str(log), "--max-tokens", str(args.max_tokens)]
    command += ["--unique", str(args.unique), "--requests", str(args.requests), "--batch-sizes", args.batch_sizes]
    for name, value in extra.items():
        command.append(f"--{name.replace('_', '-')}={value}")
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    try:
        if done.returncode == 0:
            return common.parse_result(done.stdout)
    except ValueError:
        pass
    return {"error": f"exit {done.returncode}: " + done.stderr.strip()[-1500:]}


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.quiet_logs()
    if args.child:
        figures = engine_child(args) if args.child == "engine" else pipeline_child(args)
        common.emit_result(figures)
        return figures
    result = common.header("engine_settings", {k: v for k, v in vars(args).items() if k not in ("child", "config")})
    workdir = Path(tempfile.mkdtemp(prefix="rsafe-settings-"))
    try:
        log = common.write_log(common.synthetic_rows(max(args.unique, 8), args.seed), workdir / "engine.parquet")
        result["engines"] = [
            _run_child("engine", args, log, env=CONFIG_ENV.get(c), config=c) for c in args.configs.split(",")
        ]
        result["pipelines"] = []
        if args.pipeline_n:
            job_log = common.write_log(common.synthetic_rows(args.pipeline_n, args.seed), workdir / "job.parquet")
            for label, mode, env in PIPELINE_MODES:
                figures = _run_child("pipeline", args, job_log, env=env, pipeline_args=mode)
                result["pipelines"].append({"label": label, "env": env, **figures})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["load_end"] = common.load()
    sizes = args.batch_sizes.split(",")
    header = ["config", "engine start s", *[f"decode tok/s @ batch {b}" for b in sizes], "load (1m)"]
    table = []
    for engine in result["engines"]:
        if "error" in engine:
            table.append(["(failed)", engine["error"][-120:].replace("|", "/"), *[""] * len(sizes), ""])
            continue
        passes = engine["passes"]
        loads = "/".join(str(p["load"][0]) for p in passes.values())
        table.append(
            [engine["config"], engine["engine_start_s"], *[passes[b]["decode_tokens_per_s"] for b in sizes], loads]
        )
    print(common.markdown_table(header, table))
    if result["pipelines"]:
        rows = [
            [p.get("label", "?"), p.get("wall_s_incl_engine_start", p.get("error", "")[-120:]), p.get("units", "")]
            for p in result["pipelines"]
        ]
        print()
        print(common.markdown_table(["FnApiRunner mode", "wall s (incl. engine start)", "units"], rows))
    common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
