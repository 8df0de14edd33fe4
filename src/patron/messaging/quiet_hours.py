"""Quiet hours and frequency caps: when a marketing message may go out to a member.

DESIGN rule 5 keeps these in one place. Both are read on the store's local clock (rule 7):
"no messages from 21:00 to 09:00" means the store's 21:00, whatever the server's zone.

Conventions:

* **Quiet window** ``[quiet_start, quiet_end)`` in local wall-clock time. It may wrap
  midnight (21:00-09:00); ``quiet_start == quiet_end`` means no quiet hours. A message may go
  at exactly ``quiet_end``, not at ``quiet_start``. An instant is quiet when the wall clock
  shows a time inside the window, so in a repeated hour (DST ending) a time counts twice.
* **Daylight saving**: the end of a quiet window is the first instant the wall clock reaches
  ``quiet_end``. When that wall time does not exist (clocks spring forward over it) the
  window ends when the clocks jump; when it happens twice (clocks fall back) it ends the
  first time at or after now. Zones come from ``zoneinfo``.
* **Frequency cap** per *calendar week*: at most ``max_per_week`` marketing messages between
  local Monday 00:00 and the next Monday 00:00. That is the week owners mean when they say
  "twice a week" and the week reports count in, and it is one indexed range query. The price,
  accepted knowingly: a member can get a week's allowance on Sunday and the next on Monday.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from patron.core.errors import ValidationFailed

__all__ = [
    "FrequencyCap",
    "earliest_send_time",
    "is_quiet",
    "next_allowed_time",
    "week_window",
]


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return at.astimezone(UTC)


def _wall(at_utc: datetime, zone: ZoneInfo) -> datetime:
    """The local wall-clock reading at an instant, as a naive datetime."""
    return at_utc.astimezone(zone).replace(tzinfo=None, fold=0)


def _check_times(quiet_start: time, quiet_end: time) -> None:
    if quiet_start.tzinfo is not None or quiet_end.tzinfo is not None:
        raise ValueError("quiet hours are local wall-clock times: pass naive times")


def _in_window(t: time, quiet_start: time, quiet_end: time) -> bool:
    if quiet_start < quiet_end:
        return quiet_start <= t < quiet_end
    if quiet_start > quiet_end:  # wraps midnight
        return t >= quiet_start or t < quiet_end
    return False


def _first_instant_at(day: date, wall_time: time, zone: ZoneInfo,
                      not_before: datetime | None = None) -> datetime:
    """The first instant (UTC) the wall clock in ``zone`` reads ``day wall_time``.

    Ambiguous wall times (clocks fall back) give the earliest of their instants that is not
    before ``not_before``; a wall time skipped by a spring-forward gives the instant of the
    jump, the first moment the clock shows a later time.
    """
    target = datetime.combine(day, wall_time)
    candidates = sorted(target.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                        for fold in (0, 1))
    exact = [u for u in candidates if _wall(u, zone) == target]
    if exact:
        later = [u for u in exact if not_before is None or u >= not_before]
        return later[0] if later else exact[-1]
    low, high = candidates  # a gap: the wall clock passes target somewhere in (low, high]
    steps_low, steps_high = 0, (high - low) // timedelta(microseconds=1)
    while steps_high - steps_low > 1:  # the first microsecond at which the clock reads later
        middle = (steps_low + steps_high) // 2
        if _wall(low + timedelta(microseconds=middle), zone) >= target:
            steps_high = middle
        else:
            steps_low = middle
    return low + timedelta(microseconds=steps_high)


def is_quiet(at: datetime, tz: str, quiet_start: time, quiet_end: time) -> bool:
    """Whether ``at`` falls in the store's quiet hours."""
    _check_times(quiet_start, quiet_end)
    wall = _wall(_utc(at, "at"), ZoneInfo(tz))
    return _in_window(wall.time(), quiet_start, quiet_end)


def next_allowed_time(now_utc: datetime, tz: str, quiet_start: time,
                      quiet_end: time) -> datetime:
    """``now_utc`` if it is outside the quiet hours, else the first instant after them (UTC).

    The outbox uses it to hold a message until the store's morning instead of refusing it.
    """
    _check_times(quiet_start, quiet_end)
    zone = ZoneInfo(tz)
    at = _utc(now_utc, "now_utc")
    # Normally one step; a second only when a DST jump lands inside a nearly day-long window.
    for _ in range(4):
        wall = _wall(at, zone)
        if not _in_window(wall.time(), quiet_start, quiet_end):
            return at
        ends_on = wall.date()
        if quiet_start > quiet_end and wall.time() >= quiet_start:
            ends_on += timedelta(days=1)  # evening part of a window that wraps midnight
        at = _first_instant_at(ends_on, quiet_end, zone, not_before=at)
    raise AssertionError("quiet window did not end")  # pragma: no cover - see the loop note


def week_window(now_utc: datetime, tz: str) -> tuple[datetime, datetime]:
    """The local ISO week containing ``now_utc``: [Monday 00:00, next Monday 00:00) in UTC.

    Frequency caps count the messages sent inside it. A week is 167, 168 or 169 hours long
    when it holds a DST change.
    """
    zone = ZoneInfo(tz)
    at = _utc(now_utc, "now_utc")
    local_day = _wall(at, zone).date()
    monday = local_day - timedelta(days=local_day.weekday())
    start = _first_instant_at(monday, time(0), zone)
    end = _first_instant_at(monday + timedelta(days=7), time(0), zone)
    if at >= end:  # clocks fell back over midnight into the old Sunday: the new week has begun
        start, end = end, _first_instant_at(monday + timedelta(days=14), time(0), zone)
    return start, end


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max_per_week`` marketing messages per member per local calendar week.

    ``0`` switches marketing messages off (``messaging_policy.weekly_cap`` allows it).
    Transactional messages (receipts, a requested code) are not capped; the caller decides
    which messages count. The count can come from the sends themselves (``sent_at``) or from
    a query over :func:`week_window` (``allows_count``).
    """

    max_per_week: int

    def __post_init__(self) -> None:
        if self.max_per_week < 0:
            raise ValidationFailed("A frequency cap cannot be negative", "max_per_week")

    def count_this_week(self, sent_at: Iterable[datetime], now_utc: datetime, tz: str) -> int:
        start, end = week_window(now_utc, tz)
        return sum(1 for sent in sent_at if start <= _utc(sent, "sent_at") < end)

    def allows_count(self, sent_this_week: int) -> bool:
        return sent_this_week < self.max_per_week

    def allows(self, sent_at: Iterable[datetime], now_utc: datetime, tz: str) -> bool:
        return self.allows_count(self.count_this_week(sent_at, now_utc, tz))


def earliest_send_time(now_utc: datetime, tz: str, *, quiet_start: time, quiet_end: time,
                       cap: FrequencyCap | None = None,
                       sent_at: Iterable[datetime] = ()) -> datetime | None:
    """The first instant at or after ``now_utc`` that is outside quiet hours and under the cap.

    A capped week pushes the message to the next local Monday, and then past that Monday's
    quiet hours; ``sent_at`` are the member's marketing sends (past or already scheduled).
    ``None`` when the cap is 0: the message is never to go (suppress it).
    """
    sends = [_utc(sent, "sent_at") for sent in sent_at]
    at = _utc(now_utc, "now_utc")
    if cap is not None and cap.max_per_week == 0:
        return None
    # each pass either returns or skips a week holding at least one send
    for _ in range(len(sends) + 2):
        at = next_allowed_time(at, tz, quiet_start, quiet_end)
        if cap is None or cap.allows(sends, at, tz):
            return at
        at = week_window(at, tz)[1]
    raise AssertionError("frequency cap did not release")  # pragma: no cover
