"""The run contract (issue 13): one run at a time per output, idempotent dead letters, killed runs abandoned."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from pipelines.job import resume_keys, run_lease
from pipelines.job.exit_codes import LOCKED, OUTPUT_UNREADABLE, exit_code_for
from pipelines.job.moderate import run
from pipelines.job.run_lease import LeaseHeldError, StoreLease, take_lease
from scripts.generate_malformed_logs import write_malformed_corpus

REPO = Path(__file__).resolve().parents[1]
SAMPLE_GLOB = str(REPO / "samples" / "logs" / "*.parquet")


def _files(out: Path, kind: str) -> list[Path]:
    return sorted(out.glob("verdicts/*/*/*.parquet" if kind == "verdicts" else "errors/*/*.parquet"))


def _column(out: Path, kind: str, column: str) -> list:
    return [v for path in _files(out, kind) for v in pq.read_table(path, columns=[column]).column(column).to_pylist()]


def _manifest(out: Path, run_id: str) -> dict:
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


def _balanced(manifest: dict) -> bool:
    return manifest["status"] == "succeeded" and manifest["accounting_problems"] == []


# --- the lease itself ---------------------------------------------------------------------------------------


def test_local_lease_excludes_a_second_holder_and_names_the_first(tmp_path):
    with take_lease(str(tmp_path), "first") as lease:
        assert json.loads((tmp_path / "_lease.json").read_text())["run_id"] == "first"
        with pytest.raises(LeaseHeldError, match=r"leased by run 'first' \(host .*, pid \d+") as caught:
            take_lease(str(tmp_path), "second")
        assert exit_code_for(caught.value) == LOCKED == 5
        assert lease.lost is None
    with take_lease(str(tmp_path), "second") as again:  # released: free again, and it knows who had it
        assert again.previous is not None and again.previous.run_id == "first"


def test_local_lease_of_a_killed_holder_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "from pipelines.job.run_lease import take_lease;"
         f"take_lease({str(tmp_path)!r}, 'victim');"
         "import time; print('held', flush=True); time.sleep(600)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError, match="victim"):
            take_lease(str(tmp_path), "waiter")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with take_lease(str(tmp_path), "waiter") as lease:  # the kernel dropped the dead holder's lock
            assert lease.previous.run_id == "victim"
    finally:
        holder.kill()


def test_waiting_for_the_lock_gets_it_once_the_holder_releases(tmp_path):
    first = take_lease(str(tmp_path), "first")
    started = time.monotonic()
    threading.Timer(1.0, first.release).start()
    with take_lease(str(tmp_path), "second", wait_s=30) as lease:
        assert lease.holder.run_id == "second"
    assert 0.9 < time.monotonic() - started < 30
    with take_lease(str(tmp_path), "third"), pytest.raises(LeaseHeldError, match="after waiting 1 s"):
        take_lease(str(tmp_path), "fourth", wait_s=1)


def test_a_routine_rerun_says_nothing_about_the_last_runs_lease(tmp_path, caplog):
    take_lease(str(tmp_path), "last-night").release()
    with caplog.at_level("INFO", logger=run_lease.log.name), take_lease(str(tmp_path), "tonight") as lease:
        assert lease.previous.run_id == "last-night"  # the file still names it: the lease was free, not taken
    assert not [r for r in caplog.records if r.levelname != "DEBUG" and "last-night" in r.getMessage()]


@pytest.fixture
def quick_store(monkeypatch):
    monkeypatch.setattr(StoreLease, "settle_s", 0.05)


def test_store_lease_claims_by_read_back_and_refuses_a_live_holder(tmp_path, quick_store):
    with take_lease(str(tmp_path), "first", store=True) as lease:
        assert isinstance(lease, StoreLease)
        with pytest.raises(LeaseHeldError, match="first"):
            take_lease(str(tmp_path), "second", store=True)
    assert not (tmp_path / "_lease.json").exists()  # released: the claim file is deleted


def test_store_lease_with_an_expired_heartbeat_is_taken_over_and_the_old_holder_notices(tmp_path, quick_store, caplog):
    stale = take_lease(str(tmp_path), "stalled", store=True, ttl_s=0.2)
    stale._stop.set()  # a holder that stopped beating (a paused or partitioned worker)
    stale._thread.join()
    time.sleep(0.3)
    with take_lease(str(tmp_path), "taker", store=True) as taker:
        assert taker.previous.run_id == "stalled"
        assert "did not release the output lease" in caplog.text and "stalled" in caplog.text
        stale._beat()
        assert stale.lost is not None and "taker" in stale.lost


def test_store_lease_race_has_one_winner(tmp_path, monkeypatch):
    """Two claimants that both saw no lease and both wrote one: the read-back after the settle delay leaves
    exactly one holder (the last writer); the other backs off. Barriers make the race happen (both check before
    either writes, both writes land before either reads back: the settle delay's job), whatever the CPU load."""
    monkeypatch.setattr(StoreLease, "settle_s", 0.0)
    both_checked, both_wrote, whole_writes = threading.Barrier(2), threading.Barrier(2), threading.Lock()
    real_read, real_write, first = run_lease._read, run_lease._write, threading.local()

    def claimant() -> bool:  # the two claiming threads, not the winner's heartbeat thread
        return threading.current_thread().name.startswith("claim-")

    def read_after_both_checked(path):
        got = real_read(path)
        if claimant() and not getattr(first, "read", False):  # each claimant's existence check sees no lease
            first.read = True
            both_checked.wait(timeout=10)
        return got

    def write_then_wait_for_the_other(path, holder):
        with whole_writes:  # an object store replaces an object whole; two local writers would interleave bytes
            real_write(path, holder)
        if claimant() and not getattr(first, "wrote", False):  # the claim
            first.wrote = True
            both_wrote.wait(timeout=10)

    monkeypatch.setattr(run_lease, "_read", read_after_both_checked)
    monkeypatch.setattr(run_lease, "_write", write_then_wait_for_the_other)
    results: dict[str, object] = {}

    def claim(name: str) -> None:
        results[name] = StoreLease.try_take(str(tmp_path), run_lease.new_holder(name, 60))

    threads = [threading.Thread(target=claim, args=(name,), name=f"claim-{name}") for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, got in results.items() if isinstance(got, StoreLease)]
    assert len(winners) == 1, results
    loser = ({"a", "b"} - set(winners)).pop()
    assert results[loser].run_id == winners[0]  # the loser learns who holds it
    results[winners[0]].release()


class FlakyFileSystems:
    """Beam's `FileSystems` with `open` failing (`OSError`, as a store's transient error) for the next `failures`
    calls; everything else is the real thing."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def open(self, path, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise OSError(f"transient store error reading {path}")
        return FileSystems.open(path, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(FileSystems, name)


@pytest.fixture
def flaky_store(monkeypatch, quick_store):
    monkeypatch.setattr(run_lease, "READ_BACKOFF_S", (0.01, 0.05), raising=False)

    def inject(failures: int) -> FlakyFileSystems:
        flaky = FlakyFileSystems(failures)
        monkeypatch.setattr(run_lease, "FileSystems", flaky)
        return flaky

    return inject


def test_store_lease_read_tells_absent_from_unreadable(tmp_path, flaky_store):
    flaky_store(failures=1)
    assert run_lease._read(str(tmp_path / "_lease.json")) is None  # absent: no error, no retry needed
    (tmp_path / "_lease.json").write_bytes(run_lease.new_holder("held", 60).to_json())
    flaky_store(failures=1)
    with pytest.raises(run_lease.LeaseUnreadableError, match="transient store error"):
        run_lease._read(str(tmp_path / "_lease.json"))


def test_a_failed_heartbeat_read_does_not_lose_a_healthy_store_lease(tmp_path, flaky_store):
    with take_lease(str(tmp_path), "healthy", store=True, ttl_s=60) as lease:
        before = lease.holder.heartbeat_at
        flaky = flaky_store(failures=1)
        lease._beat()  # the first read fails, the retry reads the lease: the beat goes through
        assert lease.lost is None and flaky.failures == 0
        assert json.loads((tmp_path / "_lease.json").read_text())["heartbeat_at"] > before
        flaky_store(failures=10**6)
        lease._beat()  # the store stays down for this beat: skipped, not lost (the lease has not expired)
        assert lease.lost is None


def test_a_store_lease_unreadable_past_its_ttl_is_lost(tmp_path, flaky_store):
    lease = take_lease(str(tmp_path), "cut-off", store=True, ttl_s=0.2)
    lease._stop.set()
    lease._thread.join()
    time.sleep(0.3)
    flaky_store(failures=10**6)
    lease._beat()
    assert lease.lost is not None and "could not be read" in lease.lost


def test_a_live_store_lease_that_could_not_be_read_is_never_taken(tmp_path, flaky_store):
    with take_lease(str(tmp_path), "live", store=True, ttl_s=60):
        flaky_store(failures=1)  # one failed read: retried, and the live holder is seen
        with pytest.raises(LeaseHeldError, match="live"):
            take_lease(str(tmp_path), "second", store=True, ttl_s=1)
        flaky_store(failures=10**6)  # the store stays unreadable: the claim is given up, not made
        with pytest.raises(run_lease.LeaseUnreadableError) as caught:
            take_lease(str(tmp_path), "third", store=True, ttl_s=1)
        assert exit_code_for(caught.value) == LOCKED
        assert json.loads((tmp_path / "_lease.json").read_text())["run_id"] == "live"


# --- the job ------------------------------------------------------------------------------------------------


def _job_argv(out: Path, run_id: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.moderate", "--engine", "fake", "--input", SAMPLE_GLOB, "--output", str(out),
        "--run-id", run_id, "--batch-size", "2", "--flush-rows", "2", *extra,
    ]  # fmt: skip


def test_two_runs_started_together_on_one_output_exactly_one_writes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(_job_argv(out, f"r{i}", "--fake-seconds-per-call", "0.1"), cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, LOCKED], results
    loser_log = next(log for code, log in results if code == LOCKED)
    # the loser names the holder: run 'r0'/'r1', or "(unknown: claim in progress)" when it lost the lock before the
    # winner had written its claim (a long message is shortened in the middle on the terminal)
    assert re.search(r"LeaseHeldError: output .*\(host \S+, pid \d+, last heartbeat", loser_log), loser_log
    winners = [f"r{i}" for i, (code, _) in enumerate(results) if code == 0]
    assert [p.stem for p in sorted((out / "_runs").glob("*.json"))] == winners  # the loser wrote nothing
    keys = _column(out, "verdicts", "resume_key")
    assert len(keys) == len(set(keys)) > 0


def test_rerun_over_malformed_input_publishes_no_dead_letter_twice(tmp_path):
    corpus = write_malformed_corpus(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["--engine", "fake", "--output", str(out), "--input", str(tmp_path / "in" / "*")]
    first = run([*argv, "--run-id", "first"])
    errors_first = _column(out, "errors", "dead_letter_key")
    assert len(errors_first) == len(set(errors_first)) == sum(first.error_counts.values()) > len(corpus) // 2
    second = run([*argv, "--run-id", "second"])
    assert _column(out, "errors", "dead_letter_key") == errors_first  # nothing new was published
    assert second.error_counts == {} and _balanced(_manifest(out, "second"))
    assert second.totals["dead_letters_already_recorded"] == len(errors_first)
    assert second.totals["rows_dead_lettered"] == first.totals["rows_dead_lettered"]  # rows still accounted


class UnlistableFileSystems:
    """Beam's `FileSystems` whose listing (`match`) fails, as a store's outage would."""

    def match(self, patterns, *args, **kwargs):
        raise BeamIOError("List operation failed", {patterns[0]: OSError("503 service unavailable")})

    def __getattr__(self, name):
        return getattr(FileSystems, name)


def test_a_listing_error_on_what_was_published_fails_the_run_before_anything_is_judged(tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--engine", "fake", "--input", SAMPLE_GLOB, "--output", str(out)]
    run([*argv, "--run-id", "first"])
    published_before = _column(out, "verdicts", "resume_key")
    monkeypatch.setattr(resume_keys, "FileSystems", UnlistableFileSystems())
    with pytest.raises(resume_keys.OutputUnreadableError, match=r"could not list .*verdicts.*503") as caught:
        run([*argv, "--run-id", "second"])
    assert exit_code_for(caught.value) == OUTPUT_UNREADABLE == 8
    assert _column(out, "verdicts", "resume_key") == published_before  # nothing judged again, nothing doubled


def test_killed_runs_rerun_without_duplicates_and_are_marked_abandoned(tmp_path):
    """Kill -9 mid-run, twice, then run to completion: no duplicate verdict or dead letter, books balanced."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = []
    for attempt, wait_files in enumerate((1, 4)):
        run_id = f"killed-{attempt}"
        argv = _job_argv(out, run_id, "--fake-seconds-per-call", "0.4")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen(argv, cwd=REPO, env=env, start_new_session=True, **quiet)
        deadline = time.monotonic() + 300
        while len(_files(out, "verdicts")) < wait_files and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed.append(run_id)
    final = run(["--engine", "fake", "--input", SAMPLE_GLOB, "--output", str(out), "--run-id", "final"])
    manifest = _manifest(out, "final")
    assert _balanced(manifest)
    assert manifest["abandoned_runs"] == ["killed-1"]  # killed-0 was found abandoned by killed-1
    assert _manifest(out, "killed-1")["abandoned_runs"] == ["killed-0"]
    assert all(_manifest(out, r)["status"] == "abandoned" for r in killed)
    verdict_keys = _column(out, "verdicts", "resume_key")
    assert len(verdict_keys) == len(set(verdict_keys)) == final.totals["units_made"]
    dead = _column(out, "errors", "dead_letter_key")
    assert len(dead) == len(set(dead))
    # every dead letter the final run met is published exactly once: by it, or already by a killed run
    assert len(dead) == sum(final.error_counts.values()) + final.totals.get("dead_letters_already_recorded", 0)


# --- scheduling: a day or a range of days --------------------------------------------------------------------


def test_date_window_semantics():
    from transforms.io.date_window import DateWindow

    window = DateWindow("2026-11-26", "2026-11-27")
    assert [window.contains(d) for d in ("2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28")] == [
        False, True, True, False,
    ]  # fmt: skip
    assert DateWindow.of(only_date="2026-11-26") == DateWindow("2026-11-26", "2026-11-26")
    assert DateWindow.of(since="2026-11-27").contains("2030-01-01") and DateWindow.of() is None
    with pytest.raises(ValueError, match="either --date or --since/--until"):
        DateWindow.of("2026-11-26", since="2026-11-25")
    with pytest.raises(ValueError, match="range is empty"):
        DateWindow("2026-11-28", "2026-11-27")


def test_since_until_restricts_the_run_to_the_range(tmp_path):
    out = tmp_path / "out"
    argv = ["--engine", "fake", "--input", SAMPLE_GLOB, "--output", str(out)]
    everything = run([*argv, "--output", str(tmp_path / "all"), "--run-id", "all"])
    ranged = run([*argv, "--since", "2026-11-27", "--until", "2026-11-28", "--run-id", "ranged"])
    dates = {p.name for p in out.glob("verdicts/*/date=*")}
    assert dates and all("2026-11-27" <= d.removeprefix("date=") <= "2026-11-28" for d in dates)
    assert _balanced(_manifest(out, "ranged"))
    # the 2026-11-26 file's footer statistics lie outside the range: it is skipped unread (#28), so the books
    # account for the rows read, and the rows not read are counted apart; a row inside a read row group but outside
    # the range is still a skipped row
    counts = _manifest(out, "ranged")["input_counts"]
    assert counts["row_groups_skipped"] >= 1 and counts["rows_not_read"] > 0
    assert ranged.rows_read + counts["rows_not_read"] == everything.rows_read
    assert 0 < ranged.totals["rows_skipped"] < ranged.rows_read < everything.rows_read
    assert ranged.totals["verdicts_written"] < everything.totals["verdicts_written"]


@pytest.mark.parametrize(
    "extra",
    [["--date", "2026-11-26", "--since", "2026-11-25"], ["--since", "2026-11-28", "--until", "2026-11-27"]],
)
def test_contradictory_dates_are_a_usage_error_before_anything_is_written(tmp_path, extra):
    out = tmp_path / "out"
    done = subprocess.run(_job_argv(out, "bad", *extra), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert not out.exists()
