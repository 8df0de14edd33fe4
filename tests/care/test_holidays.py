from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.care.holidays import HOLIDAYS, holidays_between, holidays_on, is_holiday
from patron.core.errors import ValidationFailed


def _dates(code: str, year: int) -> list[date]:
    return [o.on for o in holidays_between(date(year, 1, 1), date(year, 12, 31), [code])]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("spring_festival", date(2026, 2, 17)),
        ("lunar_new_years_eve", date(2026, 2, 16)),
        ("lantern_festival", date(2026, 3, 3)),
        ("dragon_boat", date(2026, 6, 19)),
        ("qixi", date(2026, 8, 19)),
        ("mid_autumn", date(2026, 9, 25)),
        ("double_ninth", date(2026, 10, 18)),
        ("mothers_day", date(2026, 5, 10)),
        ("fathers_day", date(2026, 6, 21)),
        ("thanksgiving_us", date(2026, 11, 26)),
        ("singles_day", date(2026, 11, 11)),
        ("womens_day", date(2026, 3, 8)),
    ],
)
def test_holidays_of_2026(code: str, expected: date) -> None:
    assert _dates(code, 2026) == [expected]


def test_spring_festival_2027() -> None:
    assert _dates("spring_festival", 2027) == [date(2027, 2, 6)]


def test_new_years_eve_is_the_29th_when_the_twelfth_month_is_short() -> None:
    assert _dates("lunar_new_years_eve", 2027) == [date(2027, 2, 5)]  # 腊月廿九, no 三十
    assert _dates("lunar_new_years_eve", 2030) == [date(2030, 2, 2)]  # 腊月三十


def test_laba_can_fall_twice_in_a_solar_year_and_then_skip_one() -> None:
    # Laba of lunar 2021 was on 2022-01-10, that of lunar 2022 already on 2022-12-30
    assert _dates("laba", 2022) == [date(2022, 1, 10), date(2022, 12, 30)]
    assert _dates("laba", 2023) == []
    assert _dates("laba", 2024) == [date(2024, 1, 18)]
    assert _dates("laba", 2026) == [date(2026, 1, 26)]


def test_two_holidays_on_one_day_come_in_calendar_order() -> None:
    assert [o.code for o in holidays_on(date(2020, 10, 1))] == ["national_day", "mid_autumn"]


def test_is_holiday_limits_itself_to_the_brands_codes() -> None:
    assert is_holiday(date(2026, 12, 25))
    assert not is_holiday(date(2026, 12, 25), ["spring_festival", "mid_autumn"])
    assert is_holiday(date(2026, 9, 25), ["mid_autumn"])
    assert not is_holiday(date(2026, 9, 24))


def test_unknown_holiday_code_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationFailed) as err:
        holidays_between(date(2026, 1, 1), date(2026, 12, 31), ["mid_autumn", "midautumn"])
    assert err.value.field == "holidays"
    assert "midautumn" in err.value.message


def test_every_holiday_has_a_stable_code_and_both_names() -> None:
    for code, holiday in HOLIDAYS.items():
        assert holiday.code == code
        assert code.isascii() and code == code.lower()
        assert holiday.name_en and holiday.name_zh


@given(st.dates(min_value=date(1902, 1, 1), max_value=date(2097, 1, 1)),
       st.integers(0, 500))
def test_every_holiday_is_found_once_a_year_inside_the_window(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    found = holidays_between(start, end)
    assert all(start <= o.on <= end for o in found)
    assert [o.on for o in found] == sorted(o.on for o in found)
    for code in HOLIDAYS:
        dates = [o.on for o in found if o.code == code]
        assert all(later - earlier >= timedelta(days=320)
                   for earlier, later in pairwise(dates))
    year = holidays_between(start, start + timedelta(days=385))
    assert {o.code for o in year} == set(HOLIDAYS)
