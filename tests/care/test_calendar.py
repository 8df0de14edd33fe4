from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.care.calendar import (
    Occasion,
    anniversary_number,
    birthday_in_year,
    celebration_year,
    keys_celebrated_on,
    lunar_month_days,
    membership_anniversary,
    next_occurrence,
    occasion_dates,
    without_year,
)
from patron.members.enums import Calendar
from patron.members.rules import Birthday

MID_AUTUMN = Occasion.lunar(8, 15)


def test_lunar_birthday_moves_with_the_lunar_calendar() -> None:
    assert birthday_in_year(MID_AUTUMN, 2026) == date(2026, 9, 25)
    assert birthday_in_year(MID_AUTUMN, 2027) == date(2027, 9, 15)
    assert next_occurrence(MID_AUTUMN, date(2026, 9, 26)) == date(2027, 9, 15)
    assert next_occurrence(MID_AUTUMN, date(2026, 9, 25)) == date(2026, 9, 25)


def test_member_birthday_record_is_accepted_as_it_is() -> None:
    birthday = Birthday(Calendar.LUNAR, 8, 15, 1990)
    assert occasion_dates(birthday, date(2026, 1, 1), date(2026, 12, 31)) == [date(2026, 9, 25)]
    assert anniversary_number(birthday, date(2026, 9, 25)) == 36


def test_leap_month_birthday_is_in_the_leap_month_when_the_year_has_it() -> None:
    born_in_leap_sixth = Occasion.lunar(6, 10, leap_month=True)
    assert lunar_month_days(2025, 6, leap_month=True) == 29  # 2025 has a leap 6th month
    assert birthday_in_year(born_in_leap_sixth, 2025) == date(2025, 8, 3)  # 闰六月初十
    assert birthday_in_year(Occasion.lunar(6, 10), 2025) == date(2025, 7, 4)  # the ordinary one


def test_leap_month_birthday_is_in_the_ordinary_month_otherwise() -> None:
    born_in_leap_sixth = Occasion.lunar(6, 10, leap_month=True)
    assert birthday_in_year(born_in_leap_sixth, 2026) == date(2026, 7, 23)  # no leap month
    assert birthday_in_year(born_in_leap_sixth, 2028) == date(2028, 7, 31)  # 2028: leap 5th


def test_lunar_30th_falls_on_the_29th_of_a_short_month() -> None:
    thirtieth = Occasion.lunar(2, 30)
    assert lunar_month_days(2026, 2) == 29
    assert birthday_in_year(thirtieth, 2026) == date(2026, 4, 16)  # 二月廿九, the last day
    assert lunar_month_days(2027, 2) == 30
    assert birthday_in_year(thirtieth, 2027) == date(2027, 4, 6)  # 二月三十


def test_leap_month_30th_falls_on_the_29th_of_a_short_leap_month() -> None:
    assert birthday_in_year(Occasion.lunar(6, 30, leap_month=True), 2025) == date(2025, 8, 22)


def test_solar_feb_29_is_celebrated_on_feb_28_in_common_years() -> None:
    leapling = Occasion.solar(2, 29)
    assert birthday_in_year(leapling, 2027) == date(2027, 2, 28)
    assert birthday_in_year(leapling, 2028) == date(2028, 2, 29)
    assert next_occurrence(leapling, date(2027, 3, 1)) == date(2028, 2, 29)
    assert occasion_dates(leapling, date(2026, 1, 1), date(2028, 12, 31)) == [
        date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)]


def test_next_lunar_12th_month_birthday_is_found_across_the_lunar_new_year() -> None:
    laba = Occasion.lunar(12, 8)  # lunar 2026-12-08 is solar 2027-01-15
    assert next_occurrence(laba, date(2027, 1, 1)) == date(2027, 1, 15)
    assert next_occurrence(laba, date(2027, 1, 16)) == date(2028, 1, 4)
    assert birthday_in_year(laba, 2026) == date(2027, 1, 15)  # the year is the lunar year


def test_a_solar_year_can_hold_two_celebrations_of_a_lunar_birthday() -> None:
    first_of_twelfth = Occasion.lunar(12, 1)
    assert occasion_dates(first_of_twelfth, date(2024, 1, 1), date(2024, 12, 31)) == [
        date(2024, 1, 11), date(2024, 12, 31)]
    assert occasion_dates(first_of_twelfth, date(2025, 1, 1), date(2025, 12, 31)) == []


def test_celebration_year_keeps_two_greetings_in_one_solar_year_apart() -> None:
    first_of_twelfth = Occasion.lunar(12, 1)
    assert celebration_year(first_of_twelfth, date(2024, 1, 11)) == 2023
    assert celebration_year(first_of_twelfth, date(2024, 12, 31)) == 2024
    assert celebration_year(Occasion.solar(2, 29), date(2027, 2, 28)) == 2027
    with pytest.raises(ValueError, match="not celebrated"):
        celebration_year(first_of_twelfth, date(2024, 12, 30))


def test_window_around_new_year_finds_lunar_birthdays_of_the_previous_lunar_year() -> None:
    assert occasion_dates(Occasion.lunar(12, 8), date(2026, 12, 20), date(2027, 1, 20)) == [
        date(2027, 1, 15)]


def test_occasions_start_after_their_first_year() -> None:
    wedding = Occasion.anniversary_of(date(2020, 5, 20))
    assert occasion_dates(wedding, date(2020, 1, 1), date(2021, 12, 31)) == [date(2021, 5, 20)]
    assert birthday_in_year(wedding, 2020) is None
    assert next_occurrence(wedding, date(2019, 1, 1)) == date(2021, 5, 20)
    assert anniversary_number(wedding, date(2026, 5, 20)) == 6


def test_anniversary_number_is_none_without_a_year_and_refuses_other_days() -> None:
    assert anniversary_number(MID_AUTUMN, date(2026, 9, 25)) is None
    with pytest.raises(ValueError, match="not celebrated"):
        anniversary_number(Occasion.lunar(8, 15, year=1990), date(2026, 9, 26))


def test_lunar_age_counts_lunar_years_across_the_solar_new_year() -> None:
    born = Occasion.lunar(12, 8, year=2000)  # celebrated in lunar 2026 on solar 2027-01-15
    assert anniversary_number(born, date(2027, 1, 15)) == 26


def test_membership_anniversary_uses_the_stores_local_day() -> None:
    joined_at = datetime(2025, 3, 1, 16, 30, tzinfo=UTC)  # 00:30 on March 2 in Shanghai
    assert membership_anniversary(joined_at, "Asia/Shanghai") == Occasion.solar(3, 2, 2025)
    assert membership_anniversary(joined_at, "Europe/London") == Occasion.solar(3, 1, 2025)


def test_keys_celebrated_on_include_the_fallbacks() -> None:
    assert Occasion.solar(2, 29) in keys_celebrated_on(date(2027, 2, 28))
    assert Occasion.solar(2, 29) not in keys_celebrated_on(date(2028, 2, 28))
    eve = keys_celebrated_on(date(2026, 2, 16))  # 腊月廿九, the last day of a 29-day month
    assert Occasion.lunar(12, 29) in eve
    assert Occasion.lunar(12, 30) in eve
    assert Occasion.lunar(6, 10, leap_month=True) in keys_celebrated_on(date(2025, 8, 3))
    assert Occasion.lunar(6, 10, leap_month=True) not in keys_celebrated_on(date(2025, 7, 4))


def test_lunar_dates_beyond_lunardate_have_no_celebration() -> None:
    assert birthday_in_year(MID_AUTUMN, 2100) is None
    with pytest.raises(ValueError, match="no celebration"):
        next_occurrence(MID_AUTUMN, date(2099, 10, 1))


@pytest.mark.parametrize(
    "make",
    [lambda: Occasion.solar(2, 30), lambda: Occasion.solar(13, 1),
     lambda: Occasion.lunar(1, 31), lambda: Occasion(Calendar.SOLAR, 1, 1, None, True)],
)
def test_impossible_occasions_are_refused(make: Callable[[], Occasion]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make()


# --- properties --------------------------------------------------------------------------

_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
solar_specs = st.integers(1, 12).flatmap(
    lambda month: st.builds(Occasion.solar, st.just(month),
                            st.integers(1, _MONTH_DAYS[month - 1])))
lunar_specs = st.builds(lambda m, d, leap: Occasion.lunar(m, d, leap_month=leap),
                        st.integers(1, 12), st.integers(1, 30), st.booleans())
specs = st.one_of(solar_specs, lunar_specs)
days = st.dates(min_value=date(1902, 1, 1), max_value=date(2097, 12, 31))


@given(specs, days, st.integers(0, 800))
def test_occasion_dates_are_inside_the_window_and_sorted(spec: Occasion, start: date,
                                                         length: int) -> None:
    end = start + timedelta(days=length)
    found = occasion_dates(spec, start, end)
    assert all(start <= on <= end for on in found)
    assert found == sorted(set(found))
    assert len(found) >= length // 386  # celebrations are at most 385 days apart


@given(specs, days)
def test_next_occurrence_is_the_first_celebration_within_385_days(spec: Occasion,
                                                                          day: date) -> None:
    on = next_occurrence(spec, day)
    assert day <= on <= day + timedelta(days=385)
    assert occasion_dates(spec, day, on) == [on]


@given(specs, days)
def test_keys_celebrated_on_are_the_inverse_of_occasion_dates(spec: Occasion, day: date) -> None:
    celebrated = occasion_dates(spec, day, day) == [day]
    assert (without_year(spec) in keys_celebrated_on(day)) == celebrated


@pytest.mark.filterwarnings("ignore:toSolarDate is deprecated:DeprecationWarning")
@given(lunar_specs, st.integers(1900, 2099))
def test_lunar_years_agree_with_the_members_birthday_rule(spec: Occasion, year: int) -> None:
    birthday = Birthday(spec.calendar, spec.month, spec.day, None, spec.leap_month)
    assert birthday_in_year(spec, year) == birthday.solar_on(year)


@given(specs, st.integers(1900, 2080), days)
def test_anniversary_number_counts_years_since_the_origin(spec: Occasion, origin: int,
                                                          day: date) -> None:
    dated = Occasion(spec.calendar, spec.month, spec.day, origin, spec.leap_month)
    for on in occasion_dates(dated, day, day + timedelta(days=400)):
        number = anniversary_number(dated, on)
        assert number is not None
        assert number >= 1
        assert birthday_in_year(dated, origin + number) == on
