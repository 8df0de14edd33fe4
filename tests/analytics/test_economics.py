"""Retention economics against a hand computation, and the brand's measured retention."""

from __future__ import annotations

from datetime import UTC, date, datetime

import ibis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.analytics import economics
from patron.analytics.economics import EconomicsInputs
from patron.core.errors import ValidationFailed

# m = 100, r = 0.8, d = 0.1, 5 years: 100 + 80/1.1 + 64/1.21 + 51.2/1.331 + 40.96/1.4641
#   = 100 + 72.7273 + 52.8926 + 38.4673 + 27.9762 = 292.0634
HAND_80 = 100 + 80 / 1.1 + 64 / 1.21 + 51.2 / 1.331 + 40.96 / 1.4641
# r = 0.85: 100 + 77.2727 + 59.7107 + 46.1401 + 35.6537 = 318.7773
HAND_85 = 100 + 85 / 1.1 + 72.25 / 1.21 + 61.4125 / 1.331 + 52.200625 / 1.4641


def test_hand_computed_sums() -> None:
    assert round(HAND_80, 4) == 292.0634
    assert round(HAND_85, 4) == 318.7773


def test_clv_is_discounted_geometric_margin_less_acquisition_cost() -> None:
    clv = economics.customer_lifetime_value(annual_margin_minor=100, retention_rate=0.8,
                                            discount_rate=0.1, years=5)
    assert clv == pytest.approx(HAND_80)
    net = economics.customer_lifetime_value(annual_margin_minor=100, retention_rate=0.8,
                                            discount_rate=0.1, years=5,
                                            acquisition_cost_minor=150)
    assert net == pytest.approx(HAND_80 - 150)


def test_clv_tends_to_the_margin_multiple_over_a_long_horizon() -> None:
    clv = economics.customer_lifetime_value(annual_margin_minor=100, retention_rate=0.8,
                                            discount_rate=0.1, years=100)
    assert clv == pytest.approx(100 * 1.1 / (1.1 - 0.8))


def test_projection_of_a_cohort_and_the_uplift_of_five_points() -> None:
    inputs = EconomicsInputs(retention_rate=0.8, annual_margin_minor=10_000,
                             acquisition_cost_minor=15_000, discount_rate=0.1, years=5,
                             cohort_size=1000, purchases_per_year=4,
                             retention_cost_minor=3_000)
    result = economics.project(inputs)
    base, plus5 = result.scenarios[0], result.scenarios[5]
    assert [s.points for s in result.scenarios] == list(range(11))
    assert base.retention_rate == 0.8 and plus5.retention_rate == 0.85
    equity_80 = 1000 * (10_000 * HAND_80 / 100 - 15_000)  # 14,206,338.4
    equity_85 = 1000 * (10_000 * HAND_85 / 100 - 15_000)  # 16,877,732.1
    assert base.customer_equity_minor == round(equity_80) == 14_206_338
    assert plus5.customer_equity_minor == round(equity_85)
    assert base.clv_minor == 14_206
    assert result.uplift_5_points_pct == pytest.approx((equity_85 - equity_80) / equity_80 * 100)
    assert result.uplift_5_points_pct == pytest.approx(18.80, abs=0.01)
    # year by year: 1000, 800, 640, 512, 409.6 customers
    assert [y.customers for y in base.years] == pytest.approx([1000, 800, 640, 512, 409.6])
    assert [y.profit_minor for y in base.years] == [10_000_000, 8_000_000, 6_400_000,
                                                     5_120_000, 4_096_000]
    assert base.years[1].discounted_profit_minor == 7_272_727
    assert base.years[-1].cumulative_discounted_profit_minor == base.customer_equity_minor
    assert base.years[0].cumulative_discounted_profit_minor == 10_000_000 - 15_000_000
    assert base.expected_years == pytest.approx(1 + 0.8 + 0.64 + 0.512 + 0.4096)
    assert base.expected_purchases == pytest.approx(4 * 3.3616)
    assert result.acquisition_to_retention_ratio == pytest.approx(5.0)


def test_scenarios_stop_at_full_retention() -> None:
    near = economics.project(EconomicsInputs(retention_rate=0.96, annual_margin_minor=100))
    assert [s.retention_rate for s in near.scenarios] == [0.96, 0.97, 0.98, 0.99, 1.0]
    assert near.uplift_5_points_pct is None
    edge = economics.project(EconomicsInputs(retention_rate=0.95, annual_margin_minor=100))
    assert edge.scenarios[-1].retention_rate == 1.0
    assert edge.uplift_5_points_pct is not None


def test_uplift_is_not_a_percentage_of_a_loss() -> None:
    losing = economics.project(EconomicsInputs(retention_rate=0.5, annual_margin_minor=100,
                                               acquisition_cost_minor=1_000, years=3))
    assert losing.scenarios[0].customer_equity_minor < 0
    assert losing.uplift_5_points_pct is None
    assert all(s.uplift_pct is None for s in losing.scenarios)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.0, max_value=0.89), st.integers(min_value=0, max_value=10**6),
       st.integers(min_value=0, max_value=10**6), st.floats(min_value=0.0, max_value=0.5),
       st.integers(min_value=1, max_value=30))
def test_value_never_falls_as_retention_rises(rate: float, margin: int, cost: int,
                                              discount: float, years: int) -> None:
    result = economics.project(EconomicsInputs(
        retention_rate=rate, annual_margin_minor=margin, acquisition_cost_minor=cost,
        discount_rate=discount, years=years, cohort_size=100))
    equities = [s.customer_equity_minor for s in result.scenarios]
    assert len(equities) == 11
    assert equities == sorted(equities)
    uplifts = [s.uplift_pct for s in result.scenarios]
    if uplifts[0] is not None:
        assert uplifts[0] == 0.0
        assert all(u is not None and u >= 0 for u in uplifts)


def test_bad_inputs_are_refused_naming_every_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        economics.project(EconomicsInputs(retention_rate=1.2, annual_margin_minor=-1,
                                          acquisition_cost_minor=-5, discount_rate=1.5,
                                          years=0, cohort_size=0, purchases_per_year=0,
                                          retention_cost_minor=0))
    assert [p.field for p in err.value.problems] == [
        "retention_rate", "annual_margin_minor", "acquisition_cost_minor", "discount_rate",
        "years", "cohort_size", "purchases_per_year", "retention_cost_minor"]
    assert err.value.field == "retention_rate"
    with pytest.raises(ValidationFailed) as nan:
        economics.customer_lifetime_value(annual_margin_minor=100,
                                          retention_rate=float("nan"), discount_rate=0.1,
                                          years=5)
    assert nan.value.field == "retention_rate"


def test_a_new_customer_costs_k_times_an_old_one() -> None:
    assert economics.acquisition_to_retention_ratio(
        acquisition_cost_minor=50_000, retention_cost_minor=10_000) == 5.0
    with pytest.raises(ValidationFailed) as err:
        economics.acquisition_to_retention_ratio(acquisition_cost_minor=1,
                                                 retention_cost_minor=0)
    assert err.value.field == "retention_cost_minor"


# --- measured from the sales history ----------------------------------------------------

def sales_table(rows: list[tuple[str | None, date, int]]) -> ibis.Table:
    return ibis.memtable({
        "sale_id": [f"s{i}" for i in range(len(rows))],
        "member_id": [m for m, _, _ in rows],
        "store_id": ["store-1"] * len(rows),
        "occurred_at": [datetime(d.year, d.month, d.day, 4, tzinfo=UTC) for _, d, _ in rows],
        "occurred_on": [d for _, d, _ in rows],
        "net_minor": [v for _, _, v in rows],
    }, schema={"sale_id": "string", "member_id": "string", "store_id": "string",
               "occurred_at": "timestamp('UTC')", "occurred_on": "date",
               "net_minor": "int64"})


AS_OF = date(2026, 6, 30)  # last year: 1 Jul 2025 - 30 Jun 2026; before: 1 Jul 2024 - 30 Jun 2025


def history() -> ibis.Table:
    return sales_table([
        ("a", date(2024, 9, 1), 100), ("a", date(2025, 9, 1), 300),
        ("a", date(2025, 9, 1), 100),                                # same day: one visit
        ("b", date(2025, 1, 1), 100),                                # did not come back
        ("c", date(2026, 2, 1), 200),                                # new last year
        ("d", date(2025, 3, 1), 0),                                  # refunded: not active
        ("d", date(2026, 3, 1), 100),
        ("e", date(2024, 7, 1), 100), ("e", date(2026, 6, 30), 100),
        ("e", date(2026, 1, 5), 100),
        ("f", date(2025, 6, 30), 100), ("f", date(2025, 7, 1), 100),  # across the boundary
        ("g", date(2024, 6, 30), 100),                               # before both years
        ("h", date(2026, 7, 1), 100),                                # after as_of
        (None, date(2025, 1, 1), 500), (None, date(2026, 1, 1), 500),
    ])


def test_measured_retention_is_active_again_over_active_before() -> None:
    measured = economics.measure_retention(history(), as_of=AS_OF)
    # before: a b e f; last year: a c d e f; retained: a e f
    assert (measured.previous_year_active, measured.last_year_active,
            measured.retained) == (4, 5, 3)
    assert measured.rate == pytest.approx(0.75)


def test_measured_base_gives_revenue_and_visits_per_active_member() -> None:
    base = economics.measure_base(history(), as_of=AS_OF)
    # last year: a 400 (1 day), c 200, d 100, e 200 (2 days), f 100 -> 1000 over 5 members
    assert base.active_members == 5
    assert base.revenue_per_member_year_minor == 200
    assert base.purchases_per_year == pytest.approx(6 / 5)
    assert base.retention.rate == pytest.approx(0.75)


def test_measured_retention_of_an_empty_history_is_none() -> None:
    measured = economics.measure_retention(sales_table([("a", date(2020, 1, 1), 100)]),
                                           as_of=AS_OF)
    assert measured.rate is None
    base = economics.measure_base(sales_table([("a", date(2020, 1, 1), 100)]), as_of=AS_OF)
    assert base.revenue_per_member_year_minor is None
