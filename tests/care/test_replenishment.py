from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.care.replenishment import (
    cycles_by_member,
    estimate_cycle,
    remind_on,
    shrunk_cycle,
)
from patron.core.errors import ValidationFailed

D0 = date(2026, 1, 5)


def _days(*offsets: int) -> list[date]:
    return [D0 + timedelta(days=x) for x in offsets]


def test_formula_bought_every_20_days_is_reminded_before_day_20() -> None:
    estimate = estimate_cycle(_days(0, 19, 40, 60, 80), category_cycle_days=21)
    last = D0 + timedelta(days=80)
    assert estimate.own_median_days == 20
    assert 20 < estimate.cycle_days < 21  # pulled a third of the way toward the category
    assert estimate.runs_out_on == last + timedelta(days=20)
    assert estimate.remind_on(days_before=3) == last + timedelta(days=17)


def test_a_single_purchase_falls_back_to_the_category_cycle() -> None:
    estimate = estimate_cycle(_days(0), category_cycle_days=21)
    assert estimate.intervals == 0
    assert estimate.own_median_days is None
    assert estimate.cycle_days == 21
    assert estimate.runs_out_on == D0 + timedelta(days=21)


def test_the_members_own_cycle_weighs_more_with_every_interval() -> None:
    one = shrunk_cycle([10], category_cycle_days=30)
    eight = shrunk_cycle([10] * 8, category_cycle_days=30)
    assert one == pytest.approx(1 / 3 * 10 + 2 / 3 * 30)
    assert eight == pytest.approx(0.8 * 10 + 0.2 * 30)
    assert shrunk_cycle([10], category_cycle_days=30, prior_strength=0) == 10


def test_median_ignores_one_long_gap() -> None:
    estimate = estimate_cycle(_days(0, 14, 28, 120, 134), category_cycle_days=14)
    assert estimate.own_median_days == 14
    assert estimate.cycle_days == 14


def test_purchases_on_the_same_day_are_one_purchase_day() -> None:
    estimate = estimate_cycle(_days(10, 0, 0, 10, 20), category_cycle_days=10, prior_strength=0)
    assert estimate.intervals == 2
    assert estimate.cycle_days == 10


def test_two_cans_last_twice_as_long_when_quantities_are_given() -> None:
    estimate = estimate_cycle(_days(0, 40, 60), quantities=[2, 1, 2], category_cycle_days=20)
    assert estimate.cycle_days == 20  # days per can: 40 / 2 and 20 / 1
    assert estimate.last_quantity == 2
    assert estimate.runs_out_on == D0 + timedelta(days=60 + 40)
    plain = estimate_cycle(_days(0, 40, 60), category_cycle_days=20, prior_strength=0)
    assert plain.runs_out_on == D0 + timedelta(days=60 + 30)  # median of 40 and 20, unscaled


def test_reminder_is_never_before_the_day_after_the_purchase() -> None:
    assert remind_on(D0, 3, days_before=7) == D0 + timedelta(days=1)
    assert remind_on(D0, 20.5, days_before=3) == D0 + timedelta(days=18)  # 20.5 rounds up


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category_cycle_days": 0}, "category_cycle_days"),
        ({"category_cycle_days": 21, "prior_strength": -1}, "prior_strength"),
        ({"category_cycle_days": 21, "quantities": [1, 0]}, "quantities"),
        ({"category_cycle_days": 21, "quantities": [1]}, "quantities"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(kwargs: dict[str, object],
                                                      field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        estimate_cycle(_days(0, 10), **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_vectorised_cycles_for_a_few_members() -> None:
    result = cycles_by_member([7, 7, 7, 7, 8, 9, 9], [0, 20, 40, 60, 5, 0, 10],
                              category_cycle_days=21)
    assert result.member_ids.tolist() == [7, 8, 9]
    assert result.intervals.tolist() == [3, 0, 1]
    assert result.cycle_days.tolist() == pytest.approx([0.6 * 20 + 0.4 * 21, 21, 10 / 3 + 14])
    assert result.runs_out_day.tolist() == [80, 26, 27]
    assert result.remind_day(3).tolist() == [77, 23, 24]


def test_vectorised_cycles_take_datetime64_days() -> None:
    days = np.array(["2026-01-01", "2026-01-21"], dtype="datetime64[D]")
    result = cycles_by_member([1, 1], days, category_cycle_days=20)
    assert result.runs_out_day.astype("datetime64[D]").tolist() == [date(2026, 2, 10)]


def test_vectorised_cycles_refuse_unsorted_rows() -> None:
    with pytest.raises(ValidationFailed, match="sorted"):
        cycles_by_member([1, 1, 2], [10, 5, 0], category_cycle_days=21)
    with pytest.raises(ValidationFailed, match="sorted"):
        cycles_by_member([2, 1], [0, 0], category_cycle_days=21)


def test_vectorised_cycles_of_nobody_are_empty() -> None:
    result = cycles_by_member(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                              category_cycle_days=21)
    assert len(result.member_ids) == 0
    assert len(result.runs_out_day) == 0


histories = st.lists(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 4)), min_size=1, max_size=12),
    min_size=1, max_size=30,
)


@given(histories, st.floats(1, 90), st.sampled_from([0.0, 0.5, 2.0, 5.0]), st.booleans(),
       st.integers(0, 10))
def test_vectorised_equals_one_member_at_a_time(
    members: list[list[tuple[int, int]]], category: float, k: float, use_quantities: bool,
    days_before: int,
) -> None:
    rows = sorted((m, day, q) for m, purchases in enumerate(members) for day, q in purchases)
    member_ids = np.array([r[0] for r in rows])
    day_numbers = np.array([D0.toordinal() + r[1] for r in rows])
    quantities = np.array([float(r[2]) for r in rows]) if use_quantities else None
    result = cycles_by_member(member_ids, day_numbers, category_cycle_days=category,
                              prior_strength=k, quantities=quantities)
    assert result.member_ids.tolist() == list(range(len(members)))
    for m in range(len(members)):
        mine = [r for r in rows if r[0] == m]
        estimate = estimate_cycle(
            [D0 + timedelta(days=r[1]) for r in mine], category_cycle_days=category,
            prior_strength=k, quantities=[r[2] for r in mine] if use_quantities else None)
        assert result.cycle_days[m] == estimate.cycle_days
        assert result.intervals[m] == estimate.intervals
        assert date.fromordinal(int(result.last_day[m])) == estimate.last_purchase_on
        assert date.fromordinal(int(result.runs_out_day[m])) == estimate.runs_out_on
        assert date.fromordinal(int(result.remind_day(days_before)[m])) == estimate.remind_on(
            days_before)
