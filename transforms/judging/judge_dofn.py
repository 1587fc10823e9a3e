"""The judging DoFn: batches of de-duplicated units → verdict rows, with retries and per-unit dead letters.

One engine per worker process, shared by every DoFn instance there (Beam's `Shared`, as RunInference does).
Within a batch, units are ordered by policy version so a tenant's long policy prefix stays hot in vLLM's
prefix cache. Identical units (same content key) are judged once and the verdict fanned out to each.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from transforms.engines.protocol import EngineSpec, VerdictEngine
from transforms.judging.batch_heartbeat import HEARTBEAT
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import Judgement, JudgeRequest
from transforms.judging.judgement_memo import JudgementMemo, Recalled
from transforms.judging.phase_tokens import ContextPass, context_passes, tokens_needed
from transforms.judging.run_context import RunContext
from transforms.judging.verdict_cache import VerdictCache
from transforms.judging.verdict_rows import verdict_row
from transforms.prompts.units import DEAD_LETTER
from transforms.records import DeadLetter, ModerationUnit
from transforms.stores.ledger import BundleLedger
from transforms.stores.progress import PROGRESS
from transforms.stores.telemetry import ENGINE_MS, ENGINE_TOKENS, count

log = logging.getLogger(__name__)

UnitGroup = tuple[str, Sequence[ModerationUnit]]  # (content key, the units sharing it)


PROGRESS_EVERY_S = 30.0


def progress_heartbeat(batch: int, done_before: int, every_s: float = PROGRESS_EVERY_S):
    """While an engine call runs, log a line every `every_s` seconds: a long CPU batch must not look hung."""
    return HEARTBEAT.running(batch, done_before, every_s, log, PROGRESS.describe)


class EngineHolder:
    """Weak-referenceable holder of a loaded engine, as `Shared` requires; keep it to keep the engine."""

    def __init__(self, engine: VerdictEngine) -> None:
        self.engine = engine


_SHARED_HANDLES: dict[str, shared.Shared] = {}


def acquire_engine(spec: EngineSpec, generation: int = 0) -> EngineHolder:
    """The process-wide engine for `spec`, built on first use (Beam's `Shared`: one per worker process).

    Every DoFn instance, bundle and pipeline in the process gets the same engine while anyone holds it; a
    new `generation` rebuilds it (after the engine died).
    """
    handle = _SHARED_HANDLES.setdefault(spec.cache_key, shared.Shared())
    return handle.acquire(lambda: EngineHolder(spec.load()), tag=generation)


class JudgeUnitsDoFn(beam.DoFn):
    """Batches of unit groups → verdict rows (dicts) and, tagged `dead_letter`, units that failed.

    Groups sharing a content key are merged; content already in the run's memo (judged earlier in this run, or
    on an earlier night with `--verdict-cache`) is answered from it; the rest goes to the engine, in policy order.
    """

    def __init__(
        self, engine_spec: EngineSpec, context: RunContext, cache: VerdictCache | None = None, output: str | None = None
    ) -> None:
        self._spec = engine_spec
        self._context = context
        self._cache = cache
        self._output = output  # where the bundle's engine cost is booked (ENGINE_MS/TOKENS); None: not booked
        self._ledger: BundleLedger | None = None
        self._memo: JudgementMemo | None = None
        self._generation = 0
        self._holder: EngineHolder | None = None
        self._count_tokens: Callable[[str], int] | None = None
        self._units_done = 0
        self._tokens_done = 0
        self._engine_seconds = 0.0
        self._batches = Metrics.counter("rsafe", "engine_batches")
        self._retries = Metrics.counter("rsafe", "engine_batch_retries")
        self._rebuilds = Metrics.counter("rsafe", "engine_rebuilds")
        self._deduplicated = Metrics.counter("rsafe", "units_deduplicated")

    def _get_engine(self) -> VerdictEngine:
        """The worker's engine, acquired on first use: a run with nothing left to judge never starts one.

        (A method, not a property: Beam inspects DoFn attributes while translating the pipeline.)
        """
        if self._holder is None:
            self._holder = acquire_engine(self._spec, self._generation)
        return self._holder.engine

    def setup(self) -> None:
        self._memo = JudgementMemo(self._context.run_id, self._cache)

    def start_bundle(self) -> None:
        if self._output is not None:
            self._ledger = BundleLedger(self._output, self._context.run_id, "judge")

    def finish_bundle(self) -> None:
        if self._ledger is not None:
            self._ledger.publish()

    def process(self, batch: Sequence[UnitGroup]) -> Iterator:
        merged: dict[str, list[ModerationUnit]] = {}
        for content_key, units in batch:
            merged.setdefault(content_key, []).extend(units)
        groups = []
        for content_key, units in merged.items():
            recalled = self._memo.recall(content_key)
            if recalled is None:
                groups.append((content_key, units))
            else:
                yield from self._recalled_rows(units, recalled)
        if not groups:
            return
        groups.sort(key=lambda g: (g[1][0].policy_version, g[0]))
        groups, too_long = self._split_too_long(groups)
        for unit, message in too_long:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, unit_dead_letter(unit, "prompt_too_long", message))
        processed_at = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        with progress_heartbeat(len(groups), self._units_done):
            results = self._judge_with_retries(groups)
        elapsed = time.monotonic() - started
        self._units_done += sum(len(units) for _, units in groups)
        PROGRESS.judged(len(groups))
        self._engine_seconds += elapsed
        self._book_engine_time(results, elapsed)
        generated = sum(r.completion_tokens for _, r in results if not isinstance(r, Exception))
        self._tokens_done += generated
        log.info(
            "judged %d unit(s) in %.1f s: %s, %.2f units/s, %.0f generated tokens/s",
            len(groups),
            elapsed,
            PROGRESS.describe(),
            len(groups) / elapsed if elapsed else 0.0,
            generated / elapsed if elapsed else 0.0,
            extra={"progress": True},  # one redrawn status line on a TTY (pipelines.job.console)
        )
        for (content_key, units), result in results:
            if not isinstance(result, Exception):
                self._memo.remember(content_key, result)
            for position, unit in enumerate(units):
                if isinstance(result, Exception):
                    message = f"engine failed on this unit after retries: {type(result).__name__}: {result}"
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, unit_dead_letter(unit, "engine_error", message))
                    continue
                if position:
                    self._deduplicated.inc()
                yield verdict_row(unit, result, self._context, processed_at, deduplicated=position > 0)

    def _book_engine_time(self, results: Sequence[tuple[UnitGroup, Judgement | Exception]], elapsed: float) -> None:
        """A batch's engine tokens and time per tenant, the time shared by its groups in proportion to their tokens
        (the group's first unit pays: the copies of identical content cost nothing)."""
        if self._ledger is None or not results:
            return
        weights = [0 if isinstance(r, Exception) else r.prompt_tokens + r.completion_tokens for _, r in results]
        total = sum(weights)
        for ((content_key, units), _), weight in zip(results, weights, strict=True):
            self._ledger.saw(content_key)
            share = weight / total if total else 1 / len(results)
            self._ledger.count(ENGINE_MS, units[0].tenant_id, round(elapsed * share * 1000))
            self._ledger.count(ENGINE_TOKENS, units[0].tenant_id, weight)

    def _recalled_rows(self, units: Sequence[ModerationUnit], recalled: Recalled) -> Iterator[dict]:
        """Rows for units whose content the memo knows: only a cache entry's first use is not a duplicate."""
        processed_at = dt.datetime.now(dt.UTC)
        for position, unit in enumerate(units):
            deduplicated = recalled.used_before or position > 0
            if deduplicated:
                self._deduplicated.inc()
            if recalled.from_cache:
                count("units_from_cache", unit.tenant_id)
            yield verdict_row(
                unit, recalled.judgement, self._context, processed_at, deduplicated, from_cache=recalled.from_cache
            )

    def _passes(self, unit: ModerationUnit) -> tuple[ContextPass, ...]:
        """The generations `unit` may go through, with the tokens each sends and requests after the prompt."""
        if self._count_tokens is None:
            self._count_tokens = self._spec.load_token_counter()
        settings = self._context.settings
        limit = settings.sampling.max_tokens
        if settings.verdict_mode == "forced":
            limit = unit.reasoning_budget or settings.reasoning_budget
        head = getattr(self._get_engine(), "decision_head", None) is not None
        return context_passes(settings.verdict_mode, limit, settings.extract_categories, self._count_tokens, head)

    def _split_too_long(self, groups: list[UnitGroup]) -> tuple[list[UnitGroup], list[tuple[ModerationUnit, str]]]:
        """The groups whose every request fits the model's context, and the units of the others with why not."""
        engine = self._get_engine()
        passes = [self._passes(units[0]) for _, units in groups]
        needed = tokens_needed([units[0].prompt for _, units in groups], passes, engine.count_prompt_tokens)
        fitting, too_long = [], []
        for group, tokens in zip(groups, needed, strict=True):
            if tokens > engine.max_context_tokens:
                message = self._too_long_message(group[1][0], tokens, engine.max_context_tokens)
                too_long += [(unit, message) for unit in group[1]]
            else:
                fitting.append(group)
        return fitting, too_long

    @staticmethod
    def _too_long_message(unit: ModerationUnit, tokens: int, context: int) -> str:
        return (
            f"{unit.source_file} conversation {unit.conversation_id!r} {unit.unit} turn {unit.turn_index}: "
            f"its prompt, the judging phases' suffixes and generation need {tokens} tokens, more than the model "
            f"context of {context} tokens, even after the policy's context budget"
        )

    def _judge_with_retries(
        self, groups: list[UnitGroup], after_rebuild: bool = False
    ) -> list[tuple[UnitGroup, Judgement | Exception]]:
        """Judge the groups; a failing batch is retried in halves, down to the single group that fails.

        When the engine itself died, it is rebuilt and the same batch tried once more before any splitting.
        """
        if not groups:
            return []
        self._batches.inc()
        requests = [
            JudgeRequest(units[0].prompt, units[0].reasoning_budget, units[0].allowed_codes, units[0].cascade_band)
            for _, units in groups
        ]
        try:
            return list(zip(groups, judge_batch(self._get_engine(), requests, self._context.settings), strict=True))
        except Exception as exc:
            log.warning("engine failed on a batch of %d: %s", len(groups), exc)
            if not after_rebuild and self._rebuild_engine_if_dead(exc):
                return self._judge_with_retries(groups, after_rebuild=True)
            if len(groups) == 1:
                return [(groups[0], exc)]
            self._retries.inc()
            middle = len(groups) // 2
            return self._judge_with_retries(groups[:middle]) + self._judge_with_retries(groups[middle:])

    def _rebuild_engine_if_dead(self, exc: Exception) -> bool:
        """Rebuild a dead engine (vLLM's `EngineDeadError`: its core process is gone); True if rebuilt."""
        if "dead" not in type(exc).__name__.lower():
            return False
        log.warning("engine is dead (%s), rebuilding it", type(exc).__name__)
        self._generation += 1
        self._holder = acquire_engine(self._spec, self._generation)
        self._rebuilds.inc()
        return True


def unit_dead_letter(unit: ModerationUnit, kind: str, message: str) -> DeadLetter:
    """A dead letter for one unit, naming where it came from."""
    return DeadLetter(
        stage="inference",
        error_kind=kind,
        message=message,
        source_file=unit.source_file,
        conversation_id=unit.conversation_id,
        tenant_id=unit.tenant_id,
        rows=0,  # rows are accounted per conversation; units are accounted on their own
        unit=unit.unit,
        turn_index=unit.turn_index,
        scope=unit.resume_key,  # the same unit under the same policy, model and template
    )


def group_units(units: Iterable[ModerationUnit]) -> list[ModerationUnit]:
    """A GroupByKey's units in a deterministic order (the first one is judged, the rest share its verdict)."""
    return sorted(units, key=lambda u: u.resume_key)
