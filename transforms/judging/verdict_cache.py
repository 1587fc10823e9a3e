"""The optional cross-night verdict cache (`--verdict-cache PATH`): judge each content only once, ever.

A unit's `content_key` hashes its rendered prompt, policy version, model and template version; identical content
judged on another night gets the same judgement again (greedy decoding), so it can be reused instead of re-run.
The store is a folder of Parquet files (local or any Beam filesystem), one row per judged content:
`PATH/part-<run_id>-<n>.parquet`, each written under `PATH/_staging/` and renamed into place when complete
(`write_partitions.publish_table`), so a reader never sees half a file and a killed run keeps what it appended.

Entries are keyed by (`content_key`, `settings_key`): `settings_key` hashes what else shapes a judgement (verdict
mode, sampling, reasoning budget, category extraction, model and dtype; in `cascade` mode the band, which decides
who is reasoned; in `cascade` mode or with category extraction the threshold, which decides who gets a trace from
a decision head's cascade and who is asked for categories). What only shapes the *decision* (the threshold in the
other modes, the review band, the tenant's parse-error rule) is not part of it: a cached judgement is decided
again with tonight's settings. (A per-policy band is part of the policy's version, so of the content key.)
In the pipeline, the judge step's memo (`transforms.judging.judgement_memo`) starts filled with
the cache's entries: a unit whose content key has one becomes a verdict row without the engine (`from_cache`
true, `verdict_source` as first recorded; counted as `units_from_cache`), the others go on to the engine; every
new judgement is appended (`AppendToVerdictCache`). Several entries for one key (two runs racing) resolve to the
earliest. Engine failures are dead letters, never cached.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.io.write_partitions import VERDICT_SCHEMA, publish_table
from transforms.judging.decisions import REASONED_MODES, Judgement
from transforms.judging.run_context import RunContext
from transforms.prompts.units import stable_key

_TS = pa.timestamp("us", tz="UTC")
_FROM_VERDICTS = (
    "content_key", "outcome", "verdict_source", "p_unsafe", "score_p_unsafe", "trace_p_unsafe", "categories",
    "unknown_categories", "category_scores",
    "reasoning", "raw_output", "finish_reason", "prompt_tokens", "completion_tokens", "token_budget", "model",
    "policy_id", "policy_version", "template_version", "verdict_mode", "run_id",  # run_id: the run that judged it
)  # fmt: skip
CACHE_SCHEMA = pa.schema(
    [
        pa.field("settings_key", pa.string()),
        *(VERDICT_SCHEMA.field(name) for name in _FROM_VERDICTS),
        pa.field("cached_at", _TS),
    ]
)
"""A cache entry: the verdict columns that describe a judgement, plus what it was judged under and when."""
_JUDGEMENT_FIELDS = (
    "outcome",
    "verdict_source",
    "p_unsafe",
    "reasoning",
    "raw_output",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "token_budget",
)


@dataclasses.dataclass(frozen=True)
class VerdictCache:
    """Where the cache lives, the run's settings key, and the cache files that existed when the run was planned."""

    path: str
    settings_key: str
    files: tuple[str, ...] = ()
    flush_rows: int = 4096


def settings_key(context: RunContext, engine_spec: object = None) -> str:
    """Hash of everything besides the content that shapes a judgement (not the decision rules)."""
    settings = context.settings
    judged_by = {
        "verdict_mode": settings.verdict_mode,
        "sampling": dataclasses.asdict(settings.sampling),
        "reasoning_budget": settings.reasoning_budget,
        "extract_categories": settings.extract_categories,
        "model": context.model,
        "dtype": getattr(engine_spec, "dtype", None),
    }
    if settings.verdict_mode == "cascade":
        judged_by["cascade_band"] = settings.cascade_band
    if settings.verdict_mode in REASONED_MODES:  # 2: a decision head decides these modes from its score pass
        judged_by["reasoned_verdict"] = 2  # (1 read it at the box the guard wrote): old entries are not reused
    if settings.verdict_mode == "cascade" or settings.extract_categories:
        judged_by["threshold"] = settings.threshold
    return stable_key(sorted((k, repr(v)) for k, v in judged_by.items()))


def cache_files(path: str) -> list[str]:
    """The published cache files under `path` (none when the folder does not exist yet)."""
    pattern = FileSystems.join(path.rstrip("/"), "*.parquet")
    try:
        return sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
    except Exception:  # no such folder yet (a first run)
        return []


def open_cache(path: str, context: RunContext, engine_spec: object = None) -> VerdictCache:
    """The run's view of the cache at `path`: its settings key and the files published so far."""
    path = path.rstrip("/")
    return VerdictCache(path=path, settings_key=settings_key(context, engine_spec), files=tuple(cache_files(path)))


def read_cache_file(path: str, settings_key_: str) -> list[dict]:
    """The entries of one cache file made with `settings_key_`."""
    with FileSystems.open(path) as handle:
        table = pq.read_table(handle, filters=[("settings_key", "=", settings_key_)])
    return table.to_pylist()


def cache_row(row: dict, settings_key_: str, cached_at: dt.datetime) -> dict:
    """A verdict row (as the judge DoFn makes it) → a cache entry."""
    entry = {name: row.get(name) for name in CACHE_SCHEMA.names}
    entry.update(settings_key=settings_key_, cached_at=cached_at)
    return entry


def judgement_from_entry(entry: dict) -> Judgement:
    """The engine's answer as recorded in a cache entry."""
    return Judgement(
        **{name: entry[name] for name in _JUDGEMENT_FIELDS},
        categories=tuple(entry.get("categories") or ()),
        unknown_categories=tuple(entry.get("unknown_categories") or ()),
        # absent from entries cached before these columns existed
        score_p_unsafe=entry.get("score_p_unsafe"),
        trace_p_unsafe=entry.get("trace_p_unsafe"),
        category_scores=tuple((s["code"], s["score"]) for s in entry.get("category_scores") or ()),
    )


class AppendToVerdictCacheDoFn(beam.DoFn):
    """Judged verdict rows → new cache entries (one per content key), published in complete files."""

    def __init__(self, cache: VerdictCache, run_id: str) -> None:
        self._cache = cache
        self._run_id = run_id

    def start_bundle(self) -> None:
        self._buffer: list[dict] = []

    def process(self, row: dict) -> Iterator[str]:
        if row.get("from_cache") or row.get("deduplicated"):  # one entry per judged content
            return
        self._buffer.append(cache_row(row, self._cache.settings_key, dt.datetime.now(dt.UTC)))
        if len(self._buffer) >= self._cache.flush_rows:
            yield self._flush()

    def finish_bundle(self) -> Iterator:
        if self._buffer:
            path = self._flush()
            yield beam.utils.windowed_value.WindowedValue(path, 0, [beam.transforms.window.GlobalWindow()])

    def _flush(self) -> str:
        table = pa.Table.from_pylist(self._buffer, schema=CACHE_SCHEMA)
        self._buffer = []
        return publish_table(table, self._cache.path, self._run_id, self._cache.path)


def append_to_cache(rows, cache: VerdictCache | None, run_id: str) -> None:
    """Append the judged rows' judgements to the cache (nothing without a cache)."""
    if cache is not None:
        _ = rows | "AppendToVerdictCache" >> beam.ParDo(AppendToVerdictCacheDoFn(cache, run_id))


def load_cache(path: str, settings_key_: str | None = None) -> list[dict]:
    """Every entry in the cache at `path` (of one settings key if given); for tools and tests."""
    entries: list[dict] = []
    for file in cache_files(path):
        with FileSystems.open(file) as handle:
            table = pq.read_table(handle)
        entries += [e for e in table.to_pylist() if settings_key_ is None or e["settings_key"] == settings_key_]
    return entries
