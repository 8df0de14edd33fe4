from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.core.errors import ValidationFailed
from patron.messaging.quiet_hours import (
    FrequencyCap,
    earliest_send_time,
    is_quiet,
    next_allowed_time,
    week_window,
)

SHANGHAI = "Asia/Shanghai"
NEW_YORK = "America/New_York"
NIGHT = (time(21), time(9))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_evening_message_waits_for_the_stores_morning() -> None:
    now = utc(2026, 11, 23, 14, 0)  # 22:00 in Shanghai
    assert next_allowed_time(now, SHANGHAI, *NIGHT) == utc(2026, 11, 24, 1, 0)  # 09:00 local


def test_early_morning_message_waits_until_the_window_ends_the_same_day() -> None:
    now = utc(2026, 11, 23, 0, 59)  # 08:59 in Shanghai
    assert next_allowed_time(now, SHANGHAI, *NIGHT) == utc(2026, 11, 23, 1, 0)


def test_daytime_message_goes_now() -> None:
    now = utc(2026, 11, 23, 4, 0)  # noon in Shanghai
    assert next_allowed_time(now, SHANGHAI, *NIGHT) == now


def test_window_includes_its_start_and_excludes_its_end() -> None:
    assert is_quiet(utc(2026, 11, 23, 13, 0), SHANGHAI, *NIGHT)  # 21:00
    assert not is_quiet(utc(2026, 11, 23, 1, 0), SHANGHAI, *NIGHT)  # 09:00


def test_window_that_does_not_wrap_midnight() -> None:
    lunch = (time(12), time(14))
    assert next_allowed_time(utc(2026, 11, 23, 5, 0), SHANGHAI, *lunch) == utc(2026, 11, 23, 6)
    assert next_allowed_time(utc(2026, 11, 23, 7, 0), SHANGHAI, *lunch) == utc(2026, 11, 23, 7)


def test_equal_start_and_end_means_no_quiet_hours() -> None:
    now = utc(2026, 11, 23, 14, 0)
    assert next_allowed_time(now, SHANGHAI, time(22), time(22)) == now


def test_result_is_in_utc_whatever_zone_now_was_given_in() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo(SHANGHAI))
    allowed = next_allowed_time(now, SHANGHAI, *NIGHT)
    assert allowed == now
    assert allowed.tzinfo is UTC


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed_time(datetime(2026, 11, 23, 12, 0), SHANGHAI, *NIGHT)


def test_spring_forward_night_ends_at_nine_daylight_time() -> None:
    now = utc(2026, 3, 8, 4, 0)  # Saturday 23:00 EST; clocks jump 02:00 -> 03:00
    assert next_allowed_time(now, NEW_YORK, *NIGHT) == utc(2026, 3, 8, 13, 0)  # 09:00 EDT


def test_quiet_end_inside_the_spring_forward_gap_ends_when_the_clocks_jump() -> None:
    now = utc(2026, 3, 8, 5, 0)  # 00:00 EST; 02:30 does not exist that night
    assert next_allowed_time(now, NEW_YORK, time(21), time(2, 30)) == utc(2026, 3, 8, 7, 0)


def test_fall_back_night_ends_at_nine_standard_time() -> None:
    now = utc(2026, 11, 1, 3, 0)  # Saturday 23:00 EDT; clocks fall back 02:00 -> 01:00
    assert next_allowed_time(now, NEW_YORK, *NIGHT) == utc(2026, 11, 1, 14, 0)  # 09:00 EST


def test_quiet_end_in_the_repeated_hour_ends_at_its_first_reading_after_now() -> None:
    window = (time(21), time(1, 30))
    assert next_allowed_time(utc(2026, 11, 1, 5, 0), NEW_YORK, *window) == utc(2026, 11, 1, 5, 30)
    # 01:10 EST, the second pass: the first 01:30 is already past, the second one is next
    assert next_allowed_time(utc(2026, 11, 1, 6, 10), NEW_YORK, *window) == utc(2026, 11, 1, 6, 30)


def test_week_starts_at_local_monday_midnight() -> None:
    start, end = week_window(utc(2026, 11, 25, 12, 0), SHANGHAI)  # a Wednesday
    assert start == utc(2026, 11, 22, 16, 0)  # Monday 23 November 00:00 in Shanghai
    assert end == utc(2026, 11, 29, 16, 0)
    # Sunday 23:30 in Shanghai is still the week before, though it is Sunday in UTC as well
    assert week_window(utc(2026, 11, 22, 15, 30), SHANGHAI)[1] == start


def test_a_week_with_the_spring_forward_is_167_hours() -> None:
    start, end = week_window(utc(2026, 3, 8, 12, 0), NEW_YORK)
    assert start == utc(2026, 3, 2, 5, 0)  # Monday 00:00 EST
    assert end == utc(2026, 3, 9, 4, 0)  # Monday 00:00 EDT
    assert end - start == timedelta(hours=167)


def test_cap_counts_sends_of_the_local_calendar_week() -> None:
    cap = FrequencyCap(max_per_week=2)
    sent = [utc(2026, 11, 22, 15, 30),  # Sunday 23:30 local: last week
            utc(2026, 11, 23, 2, 0), utc(2026, 11, 25, 2, 0)]  # Monday and Wednesday
    friday = utc(2026, 11, 27, 2, 0)
    assert cap.count_this_week(sent, friday, SHANGHAI) == 2
    assert not cap.allows(sent, friday, SHANGHAI)
    assert cap.allows(sent[:2], friday, SHANGHAI)
    assert cap.allows_count(1)
    assert not cap.allows_count(2)


def test_capped_message_waits_for_next_monday_morning() -> None:
    cap = FrequencyCap(max_per_week=2)
    sent = [utc(2026, 11, 23, 2, 0), utc(2026, 11, 25, 2, 0)]
    friday_evening = utc(2026, 11, 27, 12, 0)  # 20:00 local, before quiet hours
    assert earliest_send_time(friday_evening, SHANGHAI, quiet_start=NIGHT[0],
                              quiet_end=NIGHT[1], cap=cap, sent_at=sent) == utc(2026, 11, 30, 1)
    assert earliest_send_time(friday_evening, SHANGHAI, quiet_start=NIGHT[0],
                              quiet_end=NIGHT[1]) == friday_evening


def test_a_cap_of_zero_switches_marketing_off() -> None:
    now = utc(2026, 11, 23, 4, 0)
    cap = FrequencyCap(max_per_week=0)
    assert not cap.allows([], now, SHANGHAI)
    assert earliest_send_time(now, SHANGHAI, quiet_start=NIGHT[0], quiet_end=NIGHT[1],
                              cap=cap) is None


def test_a_negative_cap_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationFailed) as err:
        FrequencyCap(max_per_week=-1)
    assert err.value.field == "max_per_week"


# --- properties, dense around the daylight-saving changes ---------------------------------

ZONES = [NEW_YORK, SHANGHAI, "Europe/London", "Australia/Lord_Howe", "America/Santiago"]


@cache
def _transitions(tz: str) -> list[datetime]:
    """The instants (UTC) the zone's offset changes in 2025-2027, found hour by hour."""
    zone = ZoneInfo(tz)
    at, found = utc(2025, 1, 1), []
    previous = at.astimezone(zone).utcoffset()
    while at < utc(2028, 1, 1):
        at += timedelta(minutes=30)
        offset = at.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(at)
            previous = offset
    return found


@st.composite
def moments(draw: st.DrawFn, tz: str) -> datetime:
    transitions = _transitions(tz)
    near_a_transition = draw(st.booleans())
    if transitions and near_a_transition:
        near = draw(st.sampled_from(transitions))
        return near + timedelta(seconds=draw(st.integers(-36 * 3600, 36 * 3600)))
    return draw(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                             timezones=st.just(UTC)))


wall_times = st.one_of(
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])),
    st.sampled_from([time(0), time(1, 30), time(2), time(2, 30), time(3)]),
)
zone_and_moment = st.sampled_from(ZONES).flatmap(lambda tz: st.tuples(st.just(tz), moments(tz)))


@given(zone_and_moment, wall_times, wall_times)
def test_allowed_time_is_the_first_instant_outside_the_window(
    zone_now: tuple[str, datetime], start: time, end: time,
) -> None:
    tz, now = zone_now
    allowed = next_allowed_time(now, tz, start, end)
    assert allowed >= now
    assert allowed.tzinfo is UTC
    assert not is_quiet(allowed, tz, start, end)
    assert (allowed == now) == (not is_quiet(now, tz, start, end))
    if allowed > now:  # nothing earlier would do
        assert is_quiet(allowed - timedelta(microseconds=1), tz, start, end)
        # a day at most, or two when a DST jump swallows the whole allowed part of a day
        assert allowed - now <= timedelta(hours=49)


@given(zone_and_moment)
def test_week_window_holds_now_and_starts_on_a_local_monday(zone_now: tuple[str, datetime]) -> None:
    tz, now = zone_now
    start, end = week_window(now, tz)
    assert start <= now < end
    assert timedelta(hours=167) <= end - start <= timedelta(hours=169)
    local_start = start.astimezone(ZoneInfo(tz))
    assert local_start.weekday() == 0
    assert local_start.time() < time(2)  # midnight, or just after a jump over it
    assert (start - timedelta(microseconds=1)).astimezone(ZoneInfo(tz)).weekday() == 6


@given(zone_and_moment, st.lists(st.integers(-14 * 24 * 60, 14 * 24 * 60), max_size=12),
       st.integers(1, 3), wall_times, wall_times)
def test_earliest_send_time_respects_quiet_hours_and_the_cap(
    zone_now: tuple[str, datetime], offsets: list[int], per_week: int, start: time, end: time,
) -> None:
    tz, now = zone_now
    sent = [now + timedelta(minutes=m) for m in offsets]
    cap = FrequencyCap(per_week)
    at = earliest_send_time(now, tz, quiet_start=start, quiet_end=end, cap=cap, sent_at=sent)
    assert at is not None
    assert at >= now
    assert not is_quiet(at, tz, start, end)
    assert cap.allows(sent, at, tz)
    local = ZoneInfo(tz)
    week = at.astimezone(local).isocalendar()[:2]
    assert sum(1 for s in sent if s.astimezone(local).isocalendar()[:2] == week) < per_week
