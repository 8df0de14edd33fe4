"""Time as a dependency: services take a ``Clock`` so tests can fix "now"."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until advanced; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def local_today(clock: Clock, tz_name: str) -> date:
    """The calendar day at a store: birthdays and schedules use the store's local day."""
    return clock.now().astimezone(ZoneInfo(tz_name)).date()


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime read back from a database that drops the zone (SQLite)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
