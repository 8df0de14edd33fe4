from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.core.errors import ValidationFailed
from patron.members import rules
from patron.members.enums import Calendar


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("13800138000", "CN", "+8613800138000"),
        ("138 0013 8000", "CN", "+8613800138000"),
        ("138-0013-8000", "CN", "+8613800138000"),
        ("+86 138 0013 8000", "CN", "+8613800138000"),
        ("0086 138 0013 8000", "CN", "+8613800138000"),
        ("+44 20 7946 0958", "CN", "+442079460958"),
        ("(415) 555-2671", "US", "+14155552671"),
    ],
)
def test_phone_is_normalised_to_e164(raw: str, region: str, expected: str) -> None:
    assert rules.normalise_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "   ", "12345", "abcdefghijk", "1380013800", "+86 999"])
def test_invalid_phone_is_rejected_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        rules.normalise_phone(raw, "CN", field="phone")
    assert err.value.field == "phone"
    assert err.value.problems[0].field == "phone"


def test_phone_is_masked_for_cashiers() -> None:
    assert rules.mask_phone("+8613812345678") == "138****5678"
    assert rules.mask_phone(None) is None


@given(st.integers(min_value=10**10, max_value=10**11 - 1))
def test_luhn_digit_makes_a_valid_card_and_catches_any_single_digit_typo(body_int: int) -> None:
    body = str(body_int)
    card = body + rules.luhn_check_digit(body)
    assert rules.is_valid_card_no(card)
    for i in range(len(card)):
        for d in "0123456789":
            if d != card[i]:
                typo = card[:i] + d + card[i + 1 :]
                assert not rules.is_valid_card_no(typo)


def test_generated_cards_are_twelve_valid_digits() -> None:
    cards = {rules.new_card_no() for _ in range(200)}
    assert all(len(c) == 12 and rules.is_valid_card_no(c) for c in cards)
    assert len(cards) == 200


def test_solar_birthday_feb_29_without_year_is_allowed_and_falls_on_feb_28() -> None:
    b = rules.validate_birthday("solar", None, 2, 29)
    assert b is not None
    assert b.solar_on(2027) == date(2027, 2, 28)
    assert b.solar_on(2028) == date(2028, 2, 29)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("solar", 1990, 2, 30, False), "birth_day"),
        (("solar", 1990, 13, 1, False), "birth_month"),
        (("solar", 1990, 2, 29, False), "birth_day"),  # 1990 is not a leap year
        (("lunar", None, 1, 31, False), "birth_day"),
        (("lunar", 2021, 4, 1, True), "birth_leap_month"),  # 2021 has no leap 4th month
        (("solar", 1990, 5, 1, True), "birth_leap_month"),
        (("julian", 1990, 5, 1, False), "birthday_calendar"),
        (("solar", 1850, 5, 1, False), "birth_year"),
        (("solar", 1990, None, 1, False), "birth_month"),
    ],
)
def test_impossible_birthdays_are_rejected_naming_the_field(
    args: tuple[str, int | None, int | None, int, bool], field: str
) -> None:
    with pytest.raises(ValidationFailed) as err:
        rules.validate_birthday(*args)
    assert err.value.field == field


def test_lunar_birthday_moves_with_the_lunar_calendar() -> None:
    mid_autumn = rules.validate_birthday("lunar", None, 8, 15)
    assert mid_autumn is not None and mid_autumn.calendar is Calendar.LUNAR
    assert mid_autumn.solar_on(2025) == date(2025, 10, 6)
    assert mid_autumn.solar_on(2026) == date(2026, 9, 25)


def test_leap_month_birthday_is_kept_and_falls_back_in_years_without_the_leap_month() -> None:
    b = rules.validate_birthday("lunar", 2020, 4, 1, True)  # 2020 had a leap 4th month
    assert b is not None and b.leap_month
    assert b.solar_on(2020) == date(2020, 5, 23)
    assert b.solar_on(2026) == date(2026, 5, 17)  # ordinary 4th month in 2026


def test_no_birthday_is_none() -> None:
    assert rules.validate_birthday(None, None, None, None) is None
