"""When a member's yearly occasions fall: solar and lunar birthdays, and anniversaries.

Design overview
---------------
An occasion is a month and day in a calendar (solar or lunar, with the lunar leap-month
flag) and, when known, the year it started (birth, wedding, founding, joining). Greetings
need the *solar* date it is celebrated on in a given year, every occurrence inside a window
(the daily job asks "whose occasion falls in the next N days?"), the next one from a day,
and the N of an N-th anniversary. ``patron.members.rules.Birthday`` satisfies the
:class:`AnnualDate` protocol, so member birthdays are passed in as they are.

Conventions, chosen once and used everywhere (they agree with ``Birthday.solar_on``):

* **Feb 29** is celebrated on **Feb 28** in common years: the last day of the member's own
  month, so a February birthday never moves into March and the birthday month stays right.
* **Lunar leap month (闰月)**: a birthday in a leap month is celebrated in the leap month in
  years that have the same leap month, otherwise in the ordinary month of that number. The
  ordinary month comes first in the year, so in a year without the leap month the greeting
  is never missed; when the leap month exists it is the true anniversary of the day.
* **Lunar 30th**: lunar months have 29 or 30 days; a birthday on the 30th falls on the 29th,
  the last day of the month, in a year whose month is short.
* **Years**: ``birthday_in_year`` takes a year *of the occasion's own calendar* (a lunar year
  for a lunar birthday). A lunar year starts between Jan 21 and Feb 20, so a lunar 12th-month
  (and sometimes late 11th-month) birthday of lunar year Y falls in solar January or February
  of Y + 1, and a solar year can hold zero, one or two of them. Windows
  (``occasion_dates``, ``next_occurrence``) therefore search every lunar year that can map
  into the window, never just the solar year.
* **Origin year**: an occasion whose start year is known is celebrated from its first
  anniversary on (N >= 1); the birth or wedding day itself is not an occurrence.

Lunar conversions use ``lunardate`` (lunar years 1900-2099); a lunar date outside that range
has no solar date here (``None``, or ``ValueError`` where an answer must exist).
"""

from __future__ import annotations

import calendar as solar_calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Protocol
from zoneinfo import ZoneInfo

from lunardate import LunarDate

from patron.members.enums import Calendar

__all__ = [
    "AnnualDate",
    "Occasion",
    "anniversary_number",
    "birthday_in_year",
    "celebration_year",
    "keys_celebrated_on",
    "lunar_month_days",
    "membership_anniversary",
    "next_occurrence",
    "occasion_dates",
    "without_year",
]


class AnnualDate(Protocol):
    """A month and day that recurs every year: what every function here takes.

    ``year`` is the year the occasion started, in its own calendar, or ``None`` when unknown.
    """

    @property
    def calendar(self) -> Calendar: ...
    @property
    def month(self) -> int: ...
    @property
    def day(self) -> int: ...
    @property
    def year(self) -> int | None: ...
    @property
    def leap_month(self) -> bool: ...


@dataclass(frozen=True)
class Occasion:
    """A yearly occasion: a birthday, a wedding or founding day, a membership anniversary.

    Field for field the same shape as ``members.rules.Birthday``, so either can be passed.
    """

    calendar: Calendar
    month: int
    day: int
    year: int | None = None
    leap_month: bool = False

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def solar(cls, month: int, day: int, year: int | None = None) -> Occasion:
        return cls(Calendar.SOLAR, month, day, year)

    @classmethod
    def lunar(cls, month: int, day: int, *, leap_month: bool = False,
              year: int | None = None) -> Occasion:
        return cls(Calendar.LUNAR, month, day, year, leap_month)

    @classmethod
    def anniversary_of(cls, on: date) -> Occasion:
        """The yearly return of a solar day: a wedding, a company's founding day."""
        return cls(Calendar.SOLAR, on.month, on.day, on.year)


def membership_anniversary(joined_at: datetime, tz: str) -> Occasion:
    """The anniversary of joining, on the local day the member joined at the store.

    ``joined_at`` is stored in UTC; a member who joined at 23:30 in Shanghai joined on that
    Shanghai day, which is the one they remember.
    """
    if joined_at.tzinfo is None:
        raise ValueError("joined_at must be timezone-aware (UTC)")
    return Occasion.anniversary_of(joined_at.astimezone(ZoneInfo(tz)).date())


def _check(spec: AnnualDate) -> None:
    if not 1 <= spec.month <= 12:
        raise ValueError(f"month must be between 1 and 12, not {spec.month}")
    if spec.calendar is Calendar.SOLAR:
        if spec.leap_month:
            raise ValueError("only lunar dates have leap months")
        last = solar_calendar.monthrange(2000, spec.month)[1]  # 2000 is a leap year
        if not 1 <= spec.day <= last:
            raise ValueError(f"day must be between 1 and {last}, not {spec.day}")
    elif not 1 <= spec.day <= 30:
        raise ValueError(f"lunar day must be between 1 and 30, not {spec.day}")


# --- the lunar calendar, one year at a time --------------------------------------------

@cache
def _lunar_year(year: int) -> Mapping[tuple[int, bool], tuple[date, int]]:
    """Every month of lunar ``year``: (month, is_leap) -> (its first solar day, its length).

    Built once per year from public ``lunardate`` calls (a month has 30 days when its day 30
    converts), so later conversions are date arithmetic. Raises ``ValueError`` outside the
    years lunardate knows.
    """
    leap = LunarDate.leap_month_for_year(year)
    months: dict[tuple[int, bool], tuple[date, int]] = {}
    for month in range(1, 13):
        for is_leap in (False, True) if month == leap else (False,):
            first: date = LunarDate(year, month, 1, is_leap).to_solar_date()
            try:
                LunarDate(year, month, 30, is_leap).to_solar_date()
                days = 30
            except ValueError:
                days = 29
            months[(month, is_leap)] = (first, days)
    return months


def lunar_month_days(year: int, month: int, *, leap_month: bool = False) -> int:
    """29 or 30: the length of a lunar month. ``ValueError`` if that month does not exist."""
    try:
        return _lunar_year(year)[(month, leap_month)][1]
    except KeyError:
        raise ValueError(
            f"lunar {year} has no {'leap ' if leap_month else ''}month {month}"
        ) from None


def _lunar_range() -> tuple[date, date]:
    first_year, last_year = 1900, 2099
    first = _lunar_year(first_year)[(1, False)][0]
    last_first, last_days = _lunar_year(last_year)[(12, False)]
    return first, last_first + timedelta(days=last_days - 1)


_LUNAR_FIRST_ON, _LUNAR_LAST_ON = _lunar_range()


# --- one occasion ------------------------------------------------------------------------

def _celebration(spec: AnnualDate, own_year: int) -> date | None:
    """The solar date ``spec`` is celebrated on in ``own_year`` of its own calendar."""
    if spec.calendar is Calendar.SOLAR:
        if not 1 <= own_year <= 9999:
            return None
        last = solar_calendar.monthrange(own_year, spec.month)[1]
        return date(own_year, spec.month, min(spec.day, last))  # Feb 29 -> Feb 28
    try:
        months = _lunar_year(own_year)
    except ValueError:
        return None
    leap = spec.leap_month and (spec.month, True) in months  # leap month only if it exists
    first, days = months[(spec.month, leap)]
    return first + timedelta(days=min(spec.day, days) - 1)  # day 30 -> 29 in a short month


def _celebrated_in(spec: AnnualDate, own_year: int) -> bool:
    return spec.year is None or own_year > spec.year


def birthday_in_year(spec: AnnualDate, year: int) -> date | None:
    """The solar date the occasion is celebrated on in ``year`` of its own calendar.

    For a lunar birthday ``year`` is the lunar year (a 12th-month birthday of lunar 2026 is
    in solar 2027). ``None`` when there is no celebration that year: before the first
    anniversary of a known origin year, or outside the lunar years lunardate covers.
    Use :func:`occasion_dates` to ask about a solar window.
    """
    _check(spec)
    if not _celebrated_in(spec, year):
        return None
    return _celebration(spec, year)


def _own_years(spec: AnnualDate, start: date, end: date) -> range:
    """The years of the occasion's calendar whose celebration can land in [start, end]."""
    # A lunar year begins in solar Jan/Feb of the same number, so lunar year Y maps into
    # solar years Y and Y + 1: a window starting in solar S can hold lunar year S - 1.
    low = start.year - 1 if spec.calendar is Calendar.LUNAR else start.year
    if spec.year is not None:
        low = max(low, spec.year + 1)
    return range(low, end.year + 1)


def occasion_dates(spec: AnnualDate, start: date, end: date) -> list[date]:
    """Every solar date in ``[start, end]`` (both included) the occasion is celebrated on.

    The daily greeting job asks with ``start = today`` and ``end = today + days_before`` in
    the store's local calendar. Sorted; empty when nothing falls in the window.
    """
    _check(spec)
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    found = []
    for own_year in _own_years(spec, start, end):
        on = _celebration(spec, own_year)
        if on is not None and start <= on <= end:
            found.append(on)
    return found


def next_occurrence(spec: AnnualDate, on_or_after: date) -> date:
    """The first solar date on or after ``on_or_after`` the occasion is celebrated on.

    At most 385 days away: a lunar year with a leap month has 383-385 days, and that is the
    longest gap between two celebrations in 1900-2099 (checked over every lunar month/day).
    ``ValueError`` when the answer lies outside the lunar years lunardate covers.
    """
    _check(spec)
    years = _own_years(spec, on_or_after, on_or_after)
    for own_year in range(years.start, years.start + 3):
        on = _celebration(spec, own_year)
        if on is not None and on >= on_or_after:
            return on
    raise ValueError(f"no celebration of {spec} on or after {on_or_after} that can be computed")


def celebration_year(spec: AnnualDate, on: date) -> int:
    """The year, in the occasion's own calendar, of the celebration on ``on``.

    This is the year to key "already greeted" records by (``birthday:<year>``): a lunar
    birthday can be celebrated twice in one solar year (lunar 12-01 fell on 2024-01-11 and
    on 2024-12-31), never twice in one lunar year. Raises ``ValueError`` when ``on`` is not
    a day the occasion is celebrated on.
    """
    _check(spec)
    if spec.calendar is Calendar.SOLAR:
        own_year = on.year
    elif _LUNAR_FIRST_ON <= on <= _LUNAR_LAST_ON:
        own_year = LunarDate.from_solar_date(on.year, on.month, on.day).year
    else:
        raise ValueError(f"{on} is outside the lunar calendar lunardate covers")
    if _celebration(spec, own_year) != on or not _celebrated_in(spec, own_year):
        raise ValueError(f"{spec} is not celebrated on {on}")
    return own_year


def anniversary_number(spec: AnnualDate, on: date) -> int | None:
    """N of the N-th birthday or anniversary celebrated on ``on``; ``None`` without a year.

    Counted in the occasion's own calendar: a lunar birthday's age is lunar years. Raises
    ``ValueError`` when ``on`` is not a day the occasion is celebrated on.
    """
    own_year = celebration_year(spec, on)
    return None if spec.year is None else own_year - spec.year


def keys_celebrated_on(day: date) -> list[Occasion]:
    """Every (calendar, month, day, leap) whose occasions are celebrated on ``day``.

    The inverse of :func:`occasion_dates`, with ``year`` left out: a daily job can select the
    members whose stored birthday matches one of these keys with an indexed query instead of
    converting every member's birthday. It includes the fallbacks: Feb 29 on Feb 28 of a
    common year, a lunar 30th on the 29th of a short month, and a leap-month birthday on the
    ordinary month of a year without that leap month.
    """
    keys = [Occasion.solar(day.month, day.day)]
    if day.month == 2 and day.day == 28 and not solar_calendar.isleap(day.year):
        keys.append(Occasion.solar(2, 29))
    if not _LUNAR_FIRST_ON <= day <= _LUNAR_LAST_ON:
        return keys
    lunar = LunarDate.from_solar_date(day.year, day.month, day.day)
    months = _lunar_year(lunar.year)
    month, is_leap = lunar.month, lunar.is_leap_month
    days = [lunar.day]
    if lunar.day == 29 and months[(month, is_leap)][1] == 29:
        days.append(30)  # the last day of a short month is also the 30th's day
    leaps = [True] if is_leap else [False] if (month, True) in months else [False, True]
    keys.extend(Occasion.lunar(month, d, leap_month=leap) for leap in leaps for d in days)
    return keys


def without_year(spec: AnnualDate) -> Occasion:
    """The key of an occasion (no origin year), comparable with :func:`keys_celebrated_on`."""
    return Occasion(spec.calendar, spec.month, spec.day, None, spec.leap_month)
