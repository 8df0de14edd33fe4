from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.core.ids import new_id
from patron.core.money import divide_round_half_up, format_minor, parse_major


def test_ids_are_uuid7_random_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 1000
    stamps = [i.int >> 80 for i in ids]
    assert stamps == sorted(stamps)


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_round_half_up_is_within_half_a_unit(n: int, d: int) -> None:
    q = divide_round_half_up(n, d)
    assert abs(q * d - n) * 2 <= d
    assert divide_round_half_up(-n, d) == -q


def test_round_half_up_rounds_halves_away_from_zero() -> None:
    assert divide_round_half_up(5, 2) == 3
    assert divide_round_half_up(-5, 2) == -3
    assert divide_round_half_up(4, 3) == 1


@given(st.integers(-10**12, 10**12))
def test_format_then_parse_round_trips(amount: int) -> None:
    text = format_minor(amount, "CNY").replace("¥", "")
    assert parse_major(text, "CNY") == amount


def test_parse_refuses_more_decimals_than_the_currency_has() -> None:
    with pytest.raises(ValueError, match="decimal places"):
        parse_major("1.005", "CNY")
    assert parse_major("1500", "JPY") == 1500
    assert format_minor(123456, "CNY") == "¥1,234.56"
