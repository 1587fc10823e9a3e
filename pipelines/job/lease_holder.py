"""Who holds an output's lease (`pipelines.job.run_lease`): the record in `OUTPUT/_lease.json`, and whether its holder
is gone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import time
import uuid


@dataclasses.dataclass(frozen=True)
class LeaseHolder:
    """Who holds (or last held) an output's lease."""

    run_id: str
    host: str
    pid: int
    token: str
    acquired_at: float  # epoch seconds
    heartbeat_at: float
    ttl_s: float

    @property
    def expires_at(self) -> float:
        return self.heartbeat_at + self.ttl_s

    def describe(self) -> str:
        """The holder in words, for the error a second run gets."""
        beat = dt.datetime.fromtimestamp(self.heartbeat_at, dt.UTC).isoformat(timespec="seconds")
        return f"run {self.run_id!r} (host {self.host}, pid {self.pid}, last heartbeat {beat})"

    def to_json(self) -> bytes:
        return json.dumps({**dataclasses.asdict(self), "expires_at": self.expires_at}, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseHolder | None:
        """The holder in a lease file; None for an empty or unreadable one (a claim cut short)."""
        try:
            raw = json.loads(data)
            return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})
        except (ValueError, KeyError, TypeError):
            return None

    def beat(self) -> LeaseHolder:
        return dataclasses.replace(self, heartbeat_at=time.time())


def new_holder(run_id: str, ttl_s: float) -> LeaseHolder:
    now = time.time()
    return LeaseHolder(run_id, socket.gethostname(), os.getpid(), uuid.uuid4().hex, now, now, ttl_s)


def holder_is_gone(holder: LeaseHolder, now: float | None = None) -> bool:
    """True when the lease can be taken over: its heartbeat expired, or its process on this host is dead."""
    if (now or time.time()) > holder.expires_at:
        return True
    if holder.host == socket.gethostname():
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False
