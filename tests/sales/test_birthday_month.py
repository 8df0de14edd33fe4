"""The birthday-month bonus finds lunar birthdays in the right lunar year.

A lunar 12th-month birthday is celebrated in January or February of the *next* solar year:
lunar 2021-12-08 is 2022-01-10. Looking it up in lunar year 2022 (numbered like the solar
year) gives 2022-12-30 and missed the January bonus.
"""

from __future__ import annotations

from patron.members.models import Member
from patron.sales.service import _is_birthday_month


def _member(calendar: str, month: int, day: int, leap: bool = False) -> Member:
    return Member(birthday_calendar=calendar, birth_month=month, birth_day=day,
                  birth_leap_month=leap)


def test_lunar_twelfth_month_birthday_falls_in_january() -> None:
    m = _member("lunar", 12, 8)
    assert _is_birthday_month(m, 1, 2022)  # lunar 2021-12-08 = 2022-01-10
    assert _is_birthday_month(m, 12, 2022)  # lunar 2022-12-08 = 2022-12-30
    assert not _is_birthday_month(m, 2, 2022)


def test_mid_autumn_birthday_and_solar_birthday() -> None:
    assert _is_birthday_month(_member("lunar", 8, 15), 9, 2026)  # 2026-09-25
    assert not _is_birthday_month(_member("lunar", 8, 15), 10, 2026)
    assert _is_birthday_month(_member("solar", 2, 29), 2, 2027)  # kept in February
    assert not _is_birthday_month(_member("solar", 3, 1), 2, 2027)
