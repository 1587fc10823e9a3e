"""Which UTC days of conversations a run judges: one day (`--date`), a range (`--since/--until`), or all."""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True)
class DateWindow:
    """Inclusive range of UTC calendar days as YYYY-MM-DD; an open end is unbounded."""

    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                try:
                    dt.date.fromisoformat(value)
                except ValueError as exc:
                    raise ValueError(f"{name} must be a YYYY-MM-DD calendar day, got {value!r}") from exc
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"the date range is empty: since {self.since} is after until {self.until}")

    @classmethod
    def of(cls, only_date: str | None = None, since: str | None = None, until: str | None = None) -> DateWindow | None:
        """The window of `--date` or of `--since/--until` (not both); None when no day is restricted."""
        if only_date is not None and (since is not None or until is not None):
            raise ValueError("give either --date or --since/--until, not both")
        if only_date is not None:
            return cls(only_date, only_date)
        return cls(since, until) if since is not None or until is not None else None

    def contains(self, date: str) -> bool:
        """Whether a YYYY-MM-DD day is in the window (ISO days compare as strings)."""
        return (self.since is None or date >= self.since) and (self.until is None or date <= self.until)

    @property
    def bounded(self) -> bool:
        """Whether both ends are given (the window is a finite list of days)."""
        return self.since is not None and self.until is not None

    def days(self) -> list[str] | None:
        """Every day of a bounded window, in order; None when an end is open."""
        if not self.bounded:
            return None
        first, last = dt.date.fromisoformat(self.since), dt.date.fromisoformat(self.until)
        return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    def overlaps(self, first: str, last: str) -> bool:
        """Whether the days [first, last] share a day with the window."""
        return (self.until is None or first <= self.until) and (self.since is None or last >= self.since)
