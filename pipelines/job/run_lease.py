"""One run at a time per output folder: a lease in `OUTPUT/_lease.json`, taken before anything is written.

The lease file names its holder (run id, host, pid, heartbeat, expiry), refreshed by a heartbeat thread.

- **Local folder** (`LocalLease`): the file is also locked with `flock`, which the kernel releases when the
  holder dies, however it dies (kill -9 included). Mutual exclusion is exact between processes of one machine
  and on filesystems with working `flock` (local disks; NFSv4 emulates it); the JSON content is for people.
- **Object store** (`StoreLease`, `gs://`, `s3://`, any Beam filesystem): no locks and no atomic rename, so the
  lease is claimed by writing it and reading it back after a settle delay; the last writer wins and every other
  claimant sees a foreign token and backs off. Exact on read-after-write-consistent stores (GCS; S3 since
  2020) unless a claimant stalls between its check and its write for longer than the settle delay. A holder
  that misses its heartbeats for a whole TTL may be taken over; it notices at its next heartbeat and the run
  fails (exit code 5) instead of reporting success. Conditional create (GCS `ifGenerationMatch=0`, S3
  `If-None-Match`) would make the claim exact; Beam's filesystem API does not expose it, so it is not used.
  A read that fails (a transient store error) is not an absent lease: reads are retried with backoff, a lease
  that could not be read is never taken (`LeaseUnreadableError`), and a heartbeat that could not read the lease
  skips that beat; only a lease unconfirmed for a whole TTL is lost.

A lease whose holder is gone (a dead local holder, or an expired heartbeat) is taken over, and every manifest
still `running` in `OUTPUT/_runs/` is then marked `abandoned`: while a run holds the lease, no other can run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import threading
import time

from apache_beam.io.filesystems import FileSystems

from pipelines.job.lease_holder import LeaseHolder, holder_is_gone, new_holder
from transforms.stores.ledger import ensure_folder

log = logging.getLogger(__name__)
LEASE_FILE = "_lease.json"


class LeaseHeldError(RuntimeError):
    """Another run holds the output's lease (exit code 5)."""


class LeaseUnreadableError(LeaseHeldError):
    """The output's lease exists (or may) but could not be read, even after retries: whether another run holds
    it is unknown, so it is not taken (exit code 5, like a held lease: nothing was written; retry later)."""


class _Lease:
    """Common part: the heartbeat thread, `lost`, and the context-manager protocol."""

    def __init__(self, path: str, holder: LeaseHolder) -> None:
        self.path, self.holder = path, holder
        self.lost: str | None = None  # why the lease was lost (object stores), or None
        self.previous: LeaseHolder | None = None  # the holder this lease took over from
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat_forever, name="rsafe-lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.holder.ttl_s / 4):
            try:
                self._beat()
            except Exception as exc:  # a missed heartbeat is not fatal by itself; expiry is
                log.warning("lease heartbeat failed: %s", exc)

    def _beat(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Stop the heartbeat and give the lease up."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> _Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LocalLease(_Lease):
    """A lease on a local folder, held through `flock` on the lease file."""

    def __init__(self, path: str, holder: LeaseHolder, fd: int) -> None:
        super().__init__(path, holder)
        self._fd = fd
        self._lock = threading.Lock()

    @classmethod
    def try_take(cls, folder: str, holder: LeaseHolder) -> LocalLease | LeaseHolder:
        """The lease, or the holder that has it."""
        import fcntl

        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, LEASE_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the engine's child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            with open(path, "rb") as handle:
                current = LeaseHolder.from_json(handle.read())
            return current or dataclasses.replace(holder, run_id="(unknown: claim in progress)", pid=0)
        lease = cls(path, holder, fd)
        lease.previous = LeaseHolder.from_json(os.pread(fd, 1 << 16, 0))
        lease._write(holder)
        lease._start_heartbeat()
        return lease

    def _write(self, holder: LeaseHolder) -> None:
        data = holder.to_json()
        with self._lock:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
            self.holder = holder

    def _beat(self) -> None:
        self._write(self.holder.beat())

    def release(self) -> None:
        super().release()
        with contextlib.suppress(OSError), self._lock:
            os.close(self._fd)  # closing the last descriptor drops the flock


class StoreLease(_Lease):
    """A lease on an object store (or any Beam filesystem): claimed by write, settle, read back."""

    settle_s = 2.0

    @classmethod
    def try_take(cls, folder: str, holder: LeaseHolder) -> StoreLease | LeaseHolder:
        """The lease, or the holder that has it; raises `LeaseUnreadableError` when the lease could not be read
        (before the claim, or in the read-back after it)."""
        path = FileSystems.join(folder, LEASE_FILE)
        retry_s = holder.ttl_s / 4
        current = _read_with_retries(path, retry_s)
        if current is not None and current.token != holder.token and not holder_is_gone(current):
            return current
        _write(path, holder)
        time.sleep(cls.settle_s)
        won = _read_with_retries(path, retry_s)
        if won is None or won.token != holder.token:
            return won or current or holder
        lease = cls(path, holder)
        lease.previous = current
        lease._start_heartbeat()
        return lease

    def _beat(self) -> None:
        try:
            current = _read_with_retries(self.path, self.holder.ttl_s / 8)
        except LeaseUnreadableError as exc:
            if time.time() <= self.holder.expires_at:  # nobody may take it before it expires: skip this beat
                log.warning("lease heartbeat skipped: %s", exc)
                return
            self.lost = f"the lease could not be read for longer than its TTL ({exc})"
            log.error("lost the output lease: %s", self.lost)
            self._stop.set()
            return
        if current is None or current.token != self.holder.token:
            taker = current.describe() if current else "nobody (the lease file is gone)"
            self.lost = f"the lease was taken over by {taker}"
            log.error("lost the output lease: %s", self.lost)
            self._stop.set()
            return
        self.holder = self.holder.beat()
        _write(self.path, self.holder)

    def release(self) -> None:
        super().release()
        with contextlib.suppress(Exception):
            current = _read(self.path)
            if current is not None and current.token == self.holder.token:
                FileSystems.delete([self.path])


def _log_previous_holder(taken: _Lease, run_id: str) -> None:
    """A routine rerun finds the last run's lease free: nothing to say on the terminal. An object-store lease that
    is still there was not released (its run stopped beating): that is worth a warning."""
    previous = taken.previous
    if previous is None or previous.run_id == run_id:
        return
    if isinstance(taken, StoreLease):
        log.warning("%s did not release the output lease (it may have crashed); it expired, so this run holds it now",
                    previous.describe())  # fmt: skip
    else:
        log.debug("the output lease was free (last held by %s)", previous.describe())


def _read(path: str) -> LeaseHolder | None:
    """The lease's holder; None when there is no lease file (or only an empty or cut-short claim). Raises
    `LeaseUnreadableError` when the file could not be read: Beam raises its own error types per filesystem for
    an absent file and for a failed read alike, so a failed open is told apart by asking whether the file
    exists."""
    try:
        with FileSystems.open(path) as handle:
            data = handle.read()
    except Exception as exc:
        try:
            present = FileSystems.exists(path)
        except Exception as exists_exc:
            raise LeaseUnreadableError(f"could not read the lease {path}: {exc}; nor check it: {exists_exc}") from exc
        if not present:
            return None
        raise LeaseUnreadableError(f"could not read the lease {path}: {type(exc).__name__}: {exc}") from exc
    return LeaseHolder.from_json(data)


READ_BACKOFF_S = (0.1, 2.0)  # first pause between read attempts, and the longest


def _read_with_retries(path: str, within_s: float) -> LeaseHolder | None:
    """`_read`, retried with exponential backoff for up to `within_s` seconds (a fraction of the TTL)."""
    deadline = time.monotonic() + within_s
    pause = READ_BACKOFF_S[0]
    while True:
        try:
            return _read(path)
        except LeaseUnreadableError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s; retrying in %.1f s", exc, pause)
        time.sleep(pause)
        pause = min(pause * 2, READ_BACKOFF_S[1])


def _write(path: str, holder: LeaseHolder) -> None:
    ensure_folder(path.rsplit("/", 1)[0])
    with FileSystems.create(path) as handle:
        handle.write(holder.to_json())


def take_lease(
    output: str, run_id: str, wait_s: float = 0.0, ttl_s: float = 300.0, store: bool | None = None
) -> _Lease:
    """Take the output's lease, waiting up to `wait_s` for the holder to finish; raises `LeaseHeldError` naming
    the holder. `store`: force the object-store protocol (default: for any `scheme://` output)."""
    use_store = "://" in output if store is None else store
    holder = new_holder(run_id, ttl_s)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            taken = (StoreLease if use_store else LocalLease).try_take(output, holder)
        except LeaseUnreadableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(5.0, max(0.2, deadline - time.monotonic())))
            continue
        if isinstance(taken, _Lease):
            _log_previous_holder(taken, run_id)
            return taken
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait_s:.0f} s" if wait_s else ""
            raise LeaseHeldError(
                f"output {output} is leased by {taken.describe()}{waited}; "
                "wait for it (--wait-for-lock SECONDS) or check that run"
            )
        time.sleep(min(5.0, max(0.2, deadline - time.monotonic())))
