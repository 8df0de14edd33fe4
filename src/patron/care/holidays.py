"""The brand's holiday calendar: the days a shop greets its members or runs a campaign on.

Each holiday has a stable ``code`` (kept in settings and campaign rows, so never renamed),
an English and a Chinese name, and a rule that yields its solar dates:

* fixed solar days (New Year's Day, Valentine's, Women's Day, ...);
* the n-th weekday of a month (Mother's Day, Father's Day, US Thanksgiving);
* lunar days (Spring Festival, Lantern, Dragon Boat, Qixi, Mid-Autumn, Double Ninth, Laba),
  always in the ordinary lunar month: a leap month never holds the festival;
* Chinese New Year's Eve (除夕), the day before the Spring Festival: the last day of the
  12th lunar month, which is the 29th in some years and the 30th in others.

Lunar holidays of lunar year Y can fall in solar Y + 1 (Laba is often in January) or even
twice in one solar year, so windows are searched by the lunar years that map into them
(see ``care.calendar``).
"""

from __future__ import annotations

import calendar as solar_calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import Protocol

from patron.care.calendar import Occasion, occasion_dates
from patron.core.errors import ValidationFailed

__all__ = [
    "HOLIDAYS",
    "FixedSolarDay",
    "Holiday",
    "HolidayOccurrence",
    "HolidayRule",
    "LunarDay",
    "LunarNewYearsEve",
    "NthWeekday",
    "holidays_between",
    "holidays_on",
    "is_holiday",
]


class HolidayRule(Protocol):
    """How a holiday's solar dates are found."""

    def dates_between(self, start: date, end: date) -> list[date]:
        """Every date of the holiday in ``[start, end]``, both included, in order."""
        ...


@dataclass(frozen=True)
class FixedSolarDay:
    month: int
    day: int

    def dates_between(self, start: date, end: date) -> list[date]:
        return occasion_dates(Occasion.solar(self.month, self.day), start, end)


@dataclass(frozen=True)
class NthWeekday:
    """The ``n``-th ``weekday`` (Monday = 0) of ``month``; ``n = -1`` for the last one."""

    month: int
    weekday: int
    n: int

    def __post_init__(self) -> None:
        if not (1 <= self.n <= 4 or self.n == -1):
            raise ValueError("n must be 1-4 (every month has them) or -1 for the last")
        if not 0 <= self.weekday <= 6:
            raise ValueError("weekday must be 0 (Monday) to 6 (Sunday)")

    def in_year(self, year: int) -> date:
        if self.n > 0:
            first = date(year, self.month, 1)
            offset = (self.weekday - first.weekday()) % 7
            return first + timedelta(days=offset + 7 * (self.n - 1))
        last = date(year, self.month, solar_calendar.monthrange(year, self.month)[1])
        return last - timedelta(days=(last.weekday() - self.weekday) % 7)

    def dates_between(self, start: date, end: date) -> list[date]:
        return [on for year in range(start.year, end.year + 1)
                if start <= (on := self.in_year(year)) <= end]


@dataclass(frozen=True)
class LunarDay:
    """A lunar month and day, in the ordinary (not leap) month."""

    month: int
    day: int

    def dates_between(self, start: date, end: date) -> list[date]:
        return occasion_dates(Occasion.lunar(self.month, self.day), start, end)


@dataclass(frozen=True)
class LunarNewYearsEve:
    """除夕: the day before lunar new year, whether the 12th month has 29 or 30 days."""

    def dates_between(self, start: date, end: date) -> list[date]:
        new_years = occasion_dates(Occasion.lunar(1, 1), start + timedelta(days=1),
                                   end + timedelta(days=1))
        return [on - timedelta(days=1) for on in new_years]


@dataclass(frozen=True)
class Holiday:
    code: str
    name_en: str
    name_zh: str
    rule: HolidayRule


@dataclass(frozen=True)
class HolidayOccurrence:
    holiday: Holiday
    on: date

    @property
    def code(self) -> str:
        return self.holiday.code


_MONDAY, _THURSDAY, _SUNDAY = 0, 3, 6

HOLIDAYS: Mapping[str, Holiday] = MappingProxyType({
    h.code: h
    for h in (
        Holiday("new_year", "New Year's Day", "元旦", FixedSolarDay(1, 1)),
        Holiday("valentines_day", "Valentine's Day", "情人节", FixedSolarDay(2, 14)),
        Holiday("womens_day", "Women's Day", "妇女节", FixedSolarDay(3, 8)),
        Holiday("labour_day", "Labour Day", "劳动节", FixedSolarDay(5, 1)),
        Holiday("childrens_day", "Children's Day", "儿童节", FixedSolarDay(6, 1)),
        Holiday("national_day", "National Day", "国庆节", FixedSolarDay(10, 1)),
        Holiday("singles_day", "Singles' Day", "双十一", FixedSolarDay(11, 11)),
        Holiday("christmas", "Christmas Day", "圣诞节", FixedSolarDay(12, 25)),
        Holiday("mothers_day", "Mother's Day", "母亲节", NthWeekday(5, _SUNDAY, 2)),
        Holiday("fathers_day", "Father's Day", "父亲节", NthWeekday(6, _SUNDAY, 3)),
        Holiday("thanksgiving_us", "Thanksgiving (US)", "感恩节", NthWeekday(11, _THURSDAY, 4)),
        Holiday("spring_festival", "Spring Festival", "春节", LunarDay(1, 1)),
        Holiday("lantern_festival", "Lantern Festival", "元宵节", LunarDay(1, 15)),
        Holiday("dragon_boat", "Dragon Boat Festival", "端午节", LunarDay(5, 5)),
        Holiday("qixi", "Qixi Festival", "七夕", LunarDay(7, 7)),
        Holiday("mid_autumn", "Mid-Autumn Festival", "中秋节", LunarDay(8, 15)),
        Holiday("double_ninth", "Double Ninth Festival", "重阳节", LunarDay(9, 9)),
        Holiday("laba", "Laba Festival", "腊八节", LunarDay(12, 8)),
        Holiday("lunar_new_years_eve", "Chinese New Year's Eve", "除夕", LunarNewYearsEve()),
    )
})


def _select(codes: Iterable[str] | None) -> list[Holiday]:
    if codes is None:
        return list(HOLIDAYS.values())
    wanted = list(dict.fromkeys(codes))
    unknown = [code for code in wanted if code not in HOLIDAYS]
    if unknown:
        raise ValidationFailed(f"Unknown holiday code(s): {', '.join(unknown)}", "holidays",
                               code="unknown_holiday")
    return [HOLIDAYS[code] for code in wanted]


def holidays_between(start: date, end: date,
                     codes: Iterable[str] | None = None) -> list[HolidayOccurrence]:
    """Every holiday in ``[start, end]`` (both included), by date then calendar order.

    ``codes`` limits the answer to the holidays a brand celebrates; ``None`` means all.
    An unknown code is refused (it is a typo in the brand's settings, not an empty set).
    """
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    order = {code: i for i, code in enumerate(HOLIDAYS)}
    found = [HolidayOccurrence(holiday, on) for holiday in _select(codes)
             for on in holiday.rule.dates_between(start, end)]
    return sorted(found, key=lambda o: (o.on, order[o.code]))


def holidays_on(day: date, codes: Iterable[str] | None = None) -> list[HolidayOccurrence]:
    """The holidays falling on ``day`` (several can: Mid-Autumn fell on National Day in 2020)."""
    return holidays_between(day, day, codes)


def is_holiday(day: date, codes: Iterable[str] | None = None) -> bool:
    """Whether any of ``codes`` (all holidays when ``None``) falls on ``day``."""
    return bool(holidays_on(day, codes))
