"""The demo's pure generators: valid people, a believable calendar. No database."""

from __future__ import annotations

import random
from datetime import date

import numpy as np

from patron.demo import people
from patron.demo.catalogue import CATEGORIES
from patron.demo.seasons import build_seasons
from patron.members import rules


def test_mobile_numbers_are_distinct_valid_e164() -> None:
    phones = people.mobile_numbers(np.random.default_rng(1), 5_000)
    assert len(set(phones)) == len(phones)
    sample = phones[:: len(phones) // 500]
    assert all(rules.normalise_phone(p, "CN") == p for p in sample)
    assert all(p.startswith("+861") and len(p) == 14 for p in phones)


def test_card_numbers_are_distinct_and_pass_luhn() -> None:
    cards = people.card_numbers(np.random.default_rng(2), 5_000)
    assert len(set(cards)) == len(cards)
    assert all(len(c) == 12 and rules.is_valid_card_no(c) for c in cards)


def test_same_generator_state_gives_same_people() -> None:
    first = people.mobile_numbers(np.random.default_rng(3), 100)
    again = people.mobile_numbers(np.random.default_rng(3), 100)
    other = people.mobile_numbers(np.random.default_rng(4), 100)
    assert first == again
    assert first != other


def test_lunar_birthday_keeps_the_leap_month() -> None:
    # 2023-03-22 was the first day of the leap second month (闰二月) of lunar 2023.
    assert people.lunar_birthday(date(2023, 3, 22)) == (2, 1, True)
    birthday = rules.validate_birthday("lunar", 2023, 2, 1, leap_month=True)
    assert birthday is not None and birthday.leap_month


def test_names_are_mostly_chinese_with_some_english() -> None:
    rnd = random.Random(5)
    names = [people.person_name(rnd, rnd.choice(("female", "male", None)), 1990)
             for _ in range(2_000)]
    english = [name for name in names if " " in name]
    assert 40 <= len(english) <= 160
    assert all(2 <= len(n) <= 4 for n in names if " " not in n)


def test_calendar_peaks_on_singles_day_and_before_chinese_new_year() -> None:
    seasons = build_seasons(date(2024, 11, 23), 730)
    median = float(np.median(seasons.intensity))
    singles_day = seasons.intensity[seasons.index_of(date(2025, 11, 11))]
    before_new_year = seasons.intensity[seasons.index_of(date(2026, 2, 14))]  # CNY: Feb 17
    new_year = seasons.intensity[seasons.index_of(date(2026, 2, 17))]
    assert singles_day > 2 * median
    assert before_new_year > 1.4 * median
    assert new_year < 0.5 * median
    assert abs(float(seasons.intensity.mean()) - 1.0) < 1e-9


def test_catalogue_has_about_two_hundred_products_with_cycles_for_consumables() -> None:
    products = [p for c in CATEGORIES for p in c.products]
    assert 150 <= len(products) <= 250
    assert len(CATEGORIES) == 12
    cycles = {c.code: c.replenish_days for c in CATEGORIES}
    assert cycles["baby_formula"] == 21 and cycles["diapers"] == 14
    assert cycles["coffee"] == 30 and cycles["kitchen"] is None
    assert all(p.price_minor > 0 for p in products)
