"""De-duplication and the verdict cache against the real vLLM engine: what is fanned out or reused is what the
engine says when it judges that content afresh."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.job.moderate import run
from scripts.generate_sample_logs import generate_conversations, write_canonical
from tests.conftest import REAL_ENGINE_SPEC

pytestmark = pytest.mark.real_engine

# What the engine said (not when, by which run, or for which row).
JUDGED = ("verdict", "outcome", "verdict_source", "p_unsafe", "raw_output", "completion_tokens", "content_key")


def moderate(log: Path, out: Path, run_id: str, *extra: str):
    argv = ["--input", str(log), "--output", str(out), "--run-id", run_id, "--verdict-mode", "free"]
    return run([*argv, "--max-tokens", "24", *extra], engine_spec=REAL_ENGINE_SPEC)


def rows_by_conversation(out: Path) -> dict[tuple[str, str, int], dict]:
    rows = [r for p in sorted((out / "verdicts").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    keyed = {(r["conversation_id"], r["unit"], r["turn_index"]): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


@pytest.fixture(scope="module")
def nights(real_engine, tmp_path_factory):
    """Night 1: a log where 3 of 8 conversations replay earlier ones (new ids), with an empty verdict cache.
    Fresh: the replays alone, judged by the engine again (no cache). Night 2: night 1's log, same cache."""
    root = tmp_path_factory.mktemp("dedup-real")
    originals = generate_conversations(5, seed=4)
    replays = [dict(row, conversation_id=f"replay-{i}") for i, row in enumerate(originals[:3])]
    write_canonical(originals + replays, root / "night" / "logs.parquet")
    write_canonical(replays, root / "replays" / "logs.parquet")
    cache = str(root / "cache")
    night_1 = moderate(root / "night", root / "out-1", "night-1", "--verdict-cache", cache)
    fresh = moderate(root / "replays", root / "out-fresh", "fresh")
    night_2 = moderate(root / "night", root / "out-2", "night-2", "--verdict-cache", cache)
    return originals, root, night_1, fresh, night_2


def test_real_engine_replays_are_judged_once_and_fanned_out(nights):
    originals, root, night_1, _, _ = nights
    rows = rows_by_conversation(root / "out-1")
    replayed = [(k, r) for k, r in rows.items() if k[0].startswith("replay-")]
    assert replayed and all(r["deduplicated"] for _, r in replayed)
    for (cid, unit, turn), row in replayed:
        original = rows[(originals[int(cid.split("-")[1])]["conversation_id"], unit, turn)]
        assert not original["deduplicated"]
        assert {c: row[c] for c in JUDGED} == {c: original[c] for c in JUDGED}
    assert night_1.totals["verdicts_written"] == len(rows)


def test_real_engine_fanned_out_verdicts_equal_a_fresh_judgement(nights):
    _, root, _, fresh, _ = nights
    night = rows_by_conversation(root / "out-1")
    again = rows_by_conversation(root / "out-fresh")
    assert fresh.status == "succeeded" and again
    exact = [c for c in JUDGED if c != "p_unsafe"]
    for key, row in again.items():
        assert not row["deduplicated"] and not row["from_cache"]
        assert {c: row[c] for c in exact} == {c: night[key][c] for c in exact}, key
        # judged afresh in another batch: the engine's float sums may differ in the last digits
        assert row["p_unsafe"] == pytest.approx(night[key]["p_unsafe"], abs=1e-4), key


def test_real_engine_next_night_takes_every_unit_from_the_cache(nights):
    _, root, night_1, _, night_2 = nights
    first = rows_by_conversation(root / "out-1")
    second = rows_by_conversation(root / "out-2")
    assert second.keys() == first.keys()
    assert all(r["from_cache"] for r in second.values())
    assert sum(night_2.per_tenant[t].get("units_from_cache", 0) for t in night_2.per_tenant) == len(second)
    for key, row in second.items():
        assert {c: row[c] for c in JUDGED} == {c: first[key][c] for c in JUDGED}, key
    assert night_1.totals.get("units_from_cache", 0) == 0
