"""The job's options: one `PipelineOptions` subclass, validated before any worker starts."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.engines.protocol import SamplingSettings
from transforms.io.date_window import DateWindow
from transforms.judging.decisions import DEFAULT_CASCADE_BAND, VERDICT_MODES, JudgeSettings
from transforms.prompts.render import TEMPLATES


def _review_band(text: str) -> tuple[float, float]:
    match = re.fullmatch(r"\s*([0-9.]+)\s*[,:-]\s*([0-9.]+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0.35,0.65), got {text!r}")
    return float(match.group(1)), float(match.group(2))


def _date(text: str, today: dt.date | None = None) -> str:
    """A real calendar day as YYYY-MM-DD; `today`/`yesterday` are the UTC days (for a nightly cron line)."""
    today = today or dt.datetime.now(dt.UTC).date()
    relative = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text in relative:
        return relative[text].isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, today or yesterday, got {text!r}")
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a calendar day: {text!r} ({exc})") from None


class ModerationOptions(PipelineOptions):
    """Options of the nightly moderation job (also accepted with underscores, Beam style)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        def add(name: str, **kwargs) -> None:  # also as --name_with_underscores (Beam style), where that differs
            spellings = dict.fromkeys([f"--{name}", f"--{name.replace('-', '_')}"])
            parser.add_argument(*spellings, **kwargs)

        group = parser.add_argument_group("rsafe-batch")
        del group  # Beam reads options off the parser itself
        add("input", action="append", help="input Parquet file pattern (local, gs://, s3://); repeatable")
        add("output", help="output folder (local, gs://, s3://)")
        add("date", type=_date, help="only conversations created on this UTC day (YYYY-MM-DD, today, yesterday)")
        add("since", type=_date, help="only conversations created on or after this UTC day (same values)")
        add("until", type=_date, help="only conversations created on or before this UTC day (same values)")
        add("run-id", help="run id (default: UTC timestamp + random suffix)")
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="./run_batch.sh: show the engine's and Beam's logs on the terminal too (default: in the run's log)",
        )
        add(
            "model",
            help="embedded:guard (default: the embedded guard, SmolLM2-135M-Instruct + the stage-1 adapter + its "
            "decision head), embedded:lora (without the head), embedded:base (untrained), or an HF folder or hub id",
        )
        add(
            "engine",
            default="vllm",
            choices=["vllm", "fake"],
            help="'fake' is for plumbing tests/benchmarks only",
        )
        add(
            "fake-seconds-per-call",
            type=float,
            default=0.0,
            help="fake engine only: sleep per engine call (plumbing runs long enough to interrupt)",
        )
        add("max-model-len", type=int, default=4096, help="engine context length in tokens")
        add("max-tokens", type=int, default=256, help="generation limit of a free-form answer")
        add("temperature", type=float, default=0.0)
        add("top-p", type=float, default=1.0)
        add("repetition-penalty", type=float, default=1.0)
        add("seed", type=int, default=0)
        add("dtype", default="auto", help="engine dtype (auto, float32, bfloat16, float16)")
        parser.add_argument(
            "--enforce-eager",
            "--enforce_eager",
            dest="enforce_eager",
            action="store_true",
            default=True,
            help="skip torch.compile / CUDA graphs (default: on)",
        )
        parser.add_argument("--no-enforce-eager", "--no_enforce_eager", dest="enforce_eager", action="store_false")
        add("kv-cache-gib", type=float, default=1.0, help="KV cache size on the CPU engine, GiB")
        add("block-size", type=int, default=32, help="KV block size (prefix caching reuses whole blocks)")
        add("max-num-seqs", type=int, default=256, help="engine's concurrent sequences")
        add("batch-size", type=int, default=256, help="units per engine call")
        add(
            "verdict-mode",
            default="cascade",
            choices=VERDICT_MODES,
            help="cascade (default): the reasoning-free score (the guard's decision head) decides, with reasoning "
            "for the band and for flagged units; auto: the model's own reasoned box",
        )
        add("reasoning-budget", type=int, default=128, help="phase-1 reasoning tokens (forced mode)")
        add("threshold", type=float, default=0.5, help="P(unsafe) at or above which the verdict is unsafe")
        add("review-band", type=_review_band, default=None, help="LOW,HIGH: P(unsafe) in it → review")
        add("calibration", help="calibration file (python -m pipelines.calibrate): decide on calibrated P(unsafe)")
        add(
            "cascade-band",
            type=_review_band,
            default=DEFAULT_CASCADE_BAND,
            help="LOW,HIGH (--verdict-mode cascade): units whose reasoning-free P(unsafe) is in it get full reasoning "
            "(with a decision head, flagged units too)",
        )
        add("template", default="rsafe", choices=sorted(TEMPLATES))
        add("policies", action="append", help="policy file or folder (repeatable; default: shipped policies)")
        add("tenants", help="tenants file mapping tenant ids to policy ids (default: shipped)")
        parser.add_argument(
            "--reject-unknown-tenants",
            "--reject_unknown_tenants",
            action="store_true",
            help="dead-letter conversations of tenants missing from the tenants file",
        )
        add(
            "dedup",
            default="auto",
            choices=["auto", "worker", "shuffle"],
            help="how duplicate conversation ids and identical units are found: 'worker' streams with on-disk "
            "indexes per worker process (flat memory; exact on one machine), 'shuffle' uses GroupByKeys (exact "
            "across workers); auto: worker on the in-process runner with one worker, shuffle otherwise",
        )
        add("flush-rows", type=int, default=256, help="rows per published output file (at most)")
        parser.add_argument(
            "--strict-input",
            "--strict_input",
            action="store_true",
            help="no input normalisation: dead-letter a conversation at its first message that is not exactly "
            "system/user/assistant with non-empty, valid string content (the behaviour before input repairs)",
        )
        add(
            "column-map",
            action="append",
            help="NAME=COLUMN,...: read the job's column NAME from the file's COLUMN (e.g. conversation_id=id,"
            "tenant_id=org,created_at=ts,messages=conversation; also turn_index, role, content); repeatable",
        )
        add(
            "wait-for-lock",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="when another run holds the output's lease, wait up to this long for it (default: exit 5 at once)",
        )
        add("lease-ttl", type=float, default=300.0, help="seconds without a heartbeat after which a lease is stale")
        parser.add_argument(
            "--day-by-day",
            "--day_by_day",
            action="store_true",
            help="with --since and --until: one run per day (own manifest; a failed day fails only itself, exit 9)",
        )
        parser.add_argument(
            "--reread-consumed",
            "--reread_consumed",
            action="store_true",
            help="read input files an earlier succeeded run of the same days consumed unchanged (default: skipped)",
        )
        add(
            "verdict-cache",
            help="folder (local, gs://, s3://) of judgements kept across runs: content judged before is not re-run",
        )
        add(
            "dask-workers",
            type=int,
            default=2,
            help="--runner DaskRunner without --dask_client_address: worker processes of the local Dask cluster "
            "(one engine each)",
        )


def check_option_values(argv: Sequence[str]) -> None:
    """Raise `ValueError` in one line naming the option for a malformed or invalid value of the job's options, or
    a contradictory or empty range of days (Beam's own parser would print its whole usage, then exit)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    ModerationOptions._add_argparse_args(parser)
    try:
        known, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ValueError(str(exc)) from None
    DateWindow.of(known.date, known.since, known.until)


def judge_settings(options: ModerationOptions) -> JudgeSettings:
    """The run's `JudgeSettings` from its options (validated)."""
    sampling = SamplingSettings(
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        repetition_penalty=options.repetition_penalty,
        seed=options.seed,
    )
    return JudgeSettings(
        verdict_mode=options.verdict_mode,
        sampling=sampling,
        reasoning_budget=options.reasoning_budget,
        threshold=options.threshold,
        review_band=options.review_band,
        cascade_band=options.cascade_band,
        extract_categories=options.template == "rsafe-categories",
    )
