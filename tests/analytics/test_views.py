"""Business views on hand-built histories whose every figure is worked out by hand."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest import mock

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.analytics import views
from patron.analytics.views import (
    WHOLE,
    CohortBasis,
    CohortCounts,
    Grain,
    HomeKey,
    ParetoPoint,
    ParetoReport,
    Period,
    ScopeKey,
    _buckets,
    _float,
    _home,
    _int,
    _one_row,
    _rate,
    day_number,
    local_month,
    member_homes,
    with_home,
)
from patron.core.errors import ValidationFailed

S1, S2 = "store-1", "store-2"
FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 4, tzinfo=UTC)


def sales_table(rows: list[tuple[str | None, date, int]], *, store: str = S1,
                stores: list[str] | None = None, with_local_day: bool = True,
                times: list[datetime] | None = None) -> ibis.Table:
    """Canonical ``sales`` from (member or None, local day, net_minor) rows."""
    n = len(rows)
    at = times or [_noon(day) for _, day, _ in rows]
    data: dict[str, list[Any]] = {
        "sale_id": [f"sale-{i}" for i in range(n)],
        "member_id": [m for m, _, _ in rows],
        "store_id": stores or [store] * n,
        "occurred_at": at,
        "gross_minor": [max(v, 0) for _, _, v in rows],
        "discount_minor": [0] * n,
        "net_minor": [v for _, _, v in rows],
        "coupon_used": [False] * n,
    }
    schema = {"sale_id": "string", "member_id": "string", "store_id": "string",
              "occurred_at": "timestamp('UTC')", "gross_minor": "int64",
              "discount_minor": "int64", "net_minor": "int64", "coupon_used": "boolean"}
    if with_local_day:
        data["occurred_on"] = [day for _, day, _ in rows]
        schema["occurred_on"] = "date"
    return ibis.memtable(data, schema=schema)


def members_table(rows: list[tuple[str, date]], *, home: dict[str, str] | None = None,
                  tiers: dict[str, str | None] | None = None) -> ibis.Table:
    """Canonical ``members`` from (member, join day) rows; everyone at S1 unless told."""
    home = home or {}
    tiers = tiers or {}
    return ibis.memtable({
        "member_id": [m for m, _ in rows],
        "joined_at": [_noon(d) for _, d in rows],
        "home_store_id": [home.get(m, S1) for m, _ in rows],
        "status": ["active"] * len(rows),
        "tier_code": [tiers.get(m) for m, _ in rows],
    }, schema={"member_id": "string", "joined_at": "timestamp('UTC')",
               "home_store_id": "string", "status": "string", "tier_code": "string"})


# --- Pareto -----------------------------------------------------------------------------

Q1 = Period(date(2026, 1, 1), date(2026, 3, 31))


def test_pareto_top_20_percent_and_member_share_by_hand() -> None:
    d = date(2026, 2, 1)
    sales = sales_table([
        ("a", d, 300), ("a", d + timedelta(days=3), 200),  # a: 500 over two sales
        ("b", d, 200), ("c", d, 150), ("d", d, 100), ("e", d, 50),
        ("f", d, 0),                                       # refunded in full: not a buyer
        (None, d, 150), (None, d, 100),                    # walk-ins: 250
        ("a", date(2025, 12, 31), 9999),                   # before the period
    ])
    report = views.pareto(sales, period=Q1, points=5)
    assert report.total_revenue_minor == 1250
    assert report.member_revenue_minor == 1000
    assert report.walk_in_revenue_minor == 250
    assert report.member_revenue_share == pytest.approx(0.8)
    assert report.purchasing_members == 5
    assert report.top_share == pytest.approx(0.5)  # a's 500 of 1000
    assert [p.member_share for p in report.curve] == pytest.approx(
        [0, 0.2, 0.4, 0.6, 0.8, 1])
    assert [p.revenue_share for p in report.curve] == pytest.approx(
        [0, 0.5, 0.7, 0.85, 0.95, 1])


def test_pareto_top_share_counts_a_fractional_member_in_proportion() -> None:
    d = date(2026, 2, 1)
    revenue = [400, 200, 100, 100, 100, 50, 50]  # 7 members, total 1000
    sales = sales_table([(f"m{i}", d, v) for i, v in enumerate(revenue)])
    report = views.pareto(sales, period=Q1)
    # top 20 % of 7 members = 1.4 members: 400 + 0.4 × 200 = 480
    assert report.top_share == pytest.approx(0.48)


def test_pareto_store_filter_keeps_sales_made_at_the_store() -> None:
    d = date(2026, 2, 1)
    sales = sales_table([("a", d, 100), ("b", d, 300), (None, d, 100)],
                        stores=[S1, S2, S1])
    report = views.pareto(sales, period=Q1, store_ids=[S1])
    assert report.total_revenue_minor == 200
    assert report.purchasing_members == 1
    assert report.top_share == pytest.approx(0.2)  # a fifth of the only member


def test_pareto_of_no_sales_is_empty_not_an_error() -> None:
    report = views.pareto(sales_table([("a", date(2025, 1, 1), 100)]), period=Q1)
    assert report.total_revenue_minor == 0
    assert report.top_share is None
    assert report.member_revenue_share is None
    assert report.curve == (views.ParetoPoint(0.0, 0.0),)


@FAST
@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=30))
def test_pareto_curve_is_monotone_and_ends_at_one(revenue: list[int], points: int) -> None:
    d = date(2026, 2, 1)
    sales = sales_table([(f"m{i}", d, v) for i, v in enumerate(revenue)])
    report = views.pareto(sales, period=Q1, points=points)
    xs = [p.member_share for p in report.curve]
    ys = [p.revenue_share for p in report.curve]
    assert xs == sorted(xs) and ys == sorted(ys)
    assert xs[-1] == pytest.approx(1.0) and ys[-1] == pytest.approx(1.0)
    assert len(report.curve) <= points + 1
    # concave: the biggest spenders come first, so each step adds no more than the last
    slopes = [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:],
                                                                   strict=False)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(slopes))
    ordered = sorted(revenue, reverse=True)
    exact = 0.0
    for k, v in enumerate(ordered):
        exact += v * min(max(0.2 * len(ordered) - k, 0.0), 1.0)
    assert report.top_share == pytest.approx(exact / sum(revenue))
    assert report.top_share is not None and report.top_share >= 0.2 - 1e-9


# --- cohorts ----------------------------------------------------------------------------

JAN, FEB, MAR, APR = (date(2026, m, 10) for m in (1, 2, 3, 4))


def cohort_data() -> tuple[ibis.Table, ibis.Table]:
    members = members_table([
        ("a", JAN), ("b", JAN), ("c", JAN), ("d", JAN),
        ("e", FEB), ("f", FEB),
        ("g", MAR),
        ("h", date(2025, 12, 5)),  # joined before the period
        ("i", APR),                # after it
    ])
    sales = sales_table([
        ("a", JAN, 10), ("a", JAN + timedelta(days=5), 10), ("a", FEB, 10), ("a", MAR, 10),
        ("b", JAN, 10), ("b", MAR, 10),
        ("c", FEB, 10),
        ("d", MAR, 10), ("d", FEB, 0),  # the February sale was refunded in full
        ("e", FEB, 10), ("e", MAR, 10),
        ("f", MAR, 10),
        ("g", MAR, 10),
        ("h", JAN, 10), ("h", MAR, 10),
        ("i", APR, 10), ("a", APR, 10),  # after the period
        (None, FEB, 10),
    ])
    return sales, members


def test_cohort_retention_by_join_month_by_hand() -> None:
    sales, members = cohort_data()
    report = views.cohort_retention(sales, members, period=Q1)
    got = {c.month: (c.size, c.active) for c in report.cohorts}
    assert got == {
        date(2026, 1, 1): (4, (2, 2, 3)),  # Jan a b; Feb a c; Mar a b d
        date(2026, 2, 1): (2, (1, 2)),     # Feb e; Mar e f
        date(2026, 3, 1): (1, (1,)),       # g
    }
    jan = report.cohorts[0]
    assert jan.retention == pytest.approx((0.5, 0.5, 0.75))
    assert report.rows()[0] == {"cohort_month": date(2026, 1, 1), "cohort_size": 4,
                                "months_since": 0, "active": 2, "retention": 0.5}


def test_cohort_retention_by_first_purchase_by_hand() -> None:
    sales, members = cohort_data()
    report = views.cohort_retention(sales, members, period=Q1,
                                    basis=CohortBasis.FIRST_PURCHASE)
    got = {c.month: (c.size, c.active) for c in report.cohorts}
    assert got == {
        date(2026, 1, 1): (3, (3, 1, 3)),  # a b h; Feb a; Mar a b h
        date(2026, 2, 1): (2, (2, 1)),     # c e; Mar e
        date(2026, 3, 1): (3, (3,)),       # d f g
    }


def test_cohort_store_filter_uses_the_home_store() -> None:
    sales, _ = cohort_data()
    members = members_table([("a", JAN), ("b", JAN)], home={"b": S2})
    report = views.cohort_retention(sales, members, period=Q1, store_ids=[S2])
    assert [(c.size, c.active) for c in report.cohorts] == [(1, (1, 0, 1))]


@FAST
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.integers(0, 400), max_size=6)),
                min_size=1, max_size=12))
def test_retention_is_a_share_and_month_zero_is_one_for_first_purchase_cohorts(
        spec: list[tuple[int, list[int]]]) -> None:
    start = date(2026, 1, 1)
    members = members_table([(f"m{i}", start + timedelta(days=31 * j))
                             for i, (j, _) in enumerate(spec)])
    sales = sales_table([(f"m{i}", start + timedelta(days=o), 5)
                         for i, (_, offsets) in enumerate(spec) for o in offsets]
                        or [(None, start, 5)])
    period = Period(start, date(2026, 12, 31))
    for basis in CohortBasis:
        report = views.cohort_retention(sales, members, period=period, basis=basis)
        for c in report.cohorts:
            assert all(0.0 <= r <= 1.0 for r in c.retention)
            if basis is CohortBasis.FIRST_PURCHASE:
                assert c.retention[0] == 1.0


# --- repeat rate ------------------------------------------------------------------------

def test_repeat_rate_counts_purchase_days_not_sales() -> None:
    d = date(2026, 2, 1)
    sales = sales_table([
        ("a", d, 10), ("a", d + timedelta(days=1), 10),      # two days: repeater
        ("b", d, 10), ("b", d, 10),                          # twice on one day: once
        ("c", d, 10), ("c", d + timedelta(days=9), 10), ("c", d + timedelta(days=20), 10),
        ("d", d, 10), ("d", date(2025, 12, 1), 10),          # the other one is earlier
        ("e", d, 10), ("e", d + timedelta(days=2), 0),       # refunded: not a purchase
        (None, d, 10), (None, d + timedelta(days=1), 10),
    ])
    rate = views.repeat_rate(sales, None, period=Q1)
    assert (rate.purchasers, rate.repeaters) == (5, 2)
    assert rate.rate == pytest.approx(0.4)


# --- leaky bucket and churn -------------------------------------------------------------

Q2 = Period(date(2026, 4, 1), date(2026, 6, 30))


def bucket_data() -> tuple[ibis.Table, ibis.Table]:
    members = members_table([
        ("new", date(2026, 5, 10)), ("returning", date(2026, 3, 15)),
        ("lapsing", date(2025, 11, 1)), ("back", date(2025, 12, 1)),
    ])
    sales = sales_table([
        ("new", date(2026, 5, 10), 100),
        ("returning", date(2026, 3, 15), 100), ("returning", date(2026, 4, 15), 100),
        ("returning", date(2026, 5, 15), 100), ("returning", date(2026, 6, 15), 100),
        ("lapsing", date(2026, 2, 20), 100),       # 90 days run out on 21 May
        ("lapsing", date(2026, 4, 10), 0),         # refunded in full: no visit
        ("back", date(2025, 12, 1), 100),          # lapsed 1 March, before the period
        ("back", date(2026, 6, 5), 100),           # back after 186 days
        (None, date(2026, 5, 1), 100),
    ])
    return sales, members


def test_leaky_bucket_across_three_months_by_hand() -> None:
    sales, members = bucket_data()
    bucket = views.leaky_bucket(sales, members, period=Q2)
    got = [(p.starts_on, p.active_start, p.joined, p.purchasers, p.new, p.returning,
            p.reactivated, p.lapsed, p.churned, p.net_change, p.active_end)
           for p in bucket.periods]
    assert got == [
        # month       start joined buyers new ret react lapsed churned net end
        (date(2026, 4, 1), 2, 0, 1, 0, 1, 0, 0, 0, 0, 2),
        (date(2026, 5, 1), 2, 1, 2, 1, 1, 0, 1, 1, 0, 2),
        (date(2026, 6, 1), 2, 0, 2, 0, 1, 1, 0, 0, 1, 3),
    ]
    assert [p.churn_rate for p in bucket.periods] == [0.0, 0.5, 0.0]
    assert bucket.periods[-1].ends_on == date(2026, 6, 30)


def test_churn_is_lapsed_over_active_at_the_start_per_quarter() -> None:
    sales, members = bucket_data()
    (q2,) = views.churn(sales, members, period=Q2, grain=Grain.QUARTER)
    assert (q2.starts_on, q2.ends_on) == (date(2026, 4, 1), date(2026, 6, 30))
    assert (q2.active_start, q2.churned, q2.churn_rate) == (2, 1, 0.5)


def test_leaky_bucket_last_month_ends_on_the_last_day_of_the_period() -> None:
    sales, members = bucket_data()
    # "lapsing" crosses on 21 May: not yet on 20 May
    early = views.leaky_bucket(sales, members, period=Period(date(2026, 5, 1),
                                                             date(2026, 5, 20)))
    (may,) = early.periods
    assert (may.lapsed, may.active_end, may.ends_on) == (0, 3, date(2026, 5, 20))


def test_leaky_bucket_store_filter_uses_the_home_store() -> None:
    sales, _ = bucket_data()
    members = members_table([("new", date(2026, 5, 10)), ("back", date(2025, 12, 1))],
                            home={"back": S2})
    bucket = views.leaky_bucket(sales, members, period=Q2, store_ids=[S2])
    assert [(p.active_start, p.reactivated, p.active_end) for p in bucket.periods] == [
        (0, 0, 0), (0, 0, 0), (0, 1, 1)]


def test_lapse_days_are_validated() -> None:
    sales, members = bucket_data()
    with pytest.raises(ValidationFailed) as err:
        views.leaky_bucket(sales, members, period=Q2, lapse_days=0)
    assert err.value.field == "lapse_days"


@FAST
@given(st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=8), min_size=1,
                max_size=8),
       st.integers(min_value=1, max_value=120))
def test_leaky_bucket_identity_and_active_counts_match_a_slow_reference(
        histories: list[list[int]], lapse_days: int) -> None:
    origin = date(2026, 1, 1)
    period = Period(date(2026, 3, 1), date(2026, 10, 15))
    members = members_table([(f"m{i}", origin) for i in range(len(histories))])
    sales = sales_table([(f"m{i}", origin + timedelta(days=o), 7)
                         for i, offsets in enumerate(histories) for o in offsets])
    bucket = views.leaky_bucket(sales, members, period=period, lapse_days=lapse_days)

    def active_on(day: date) -> int:
        return sum(any(0 <= (day - (origin + timedelta(days=o))).days < lapse_days
                       for o in offsets) for offsets in histories)

    def events(first: date, last: date) -> tuple[int, int, int]:
        """(new, reactivated, lapsed) with event days in [first, last], slowly."""
        new = reactivated = lapsed = 0
        for offsets in histories:
            days = sorted({origin + timedelta(days=o) for o in offsets
                           if origin + timedelta(days=o) <= period.last_on})
            for k, day in enumerate(days):
                gap_before = (day - days[k - 1]).days if k else None
                if first <= day <= last:
                    new += gap_before is None
                    reactivated += gap_before is not None and gap_before > lapse_days
                ends = day + timedelta(days=lapse_days)
                if (k + 1 == len(days) or (days[k + 1] - day).days > lapse_days) \
                        and first <= ends <= last:
                    lapsed += 1
        return new, reactivated, lapsed

    previous_end = None
    for p in bucket.periods:
        assert p.active_end == p.active_start + p.new + p.reactivated - p.lapsed
        assert p.active_start == active_on(p.starts_on - timedelta(days=1))
        assert p.active_end == active_on(p.ends_on)
        assert (p.new, p.reactivated, p.lapsed) == events(p.starts_on, p.ends_on)
        assert 0 <= p.churned <= min(p.lapsed, p.active_start)
        if previous_end is not None:
            assert p.active_start == previous_end
        previous_end = p.active_end


# --- every store and each store in one pass ---------------------------------------------

S3 = "store-3"  # has sales but no members


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([S1, S2, None]),  # home store (None: none)
                          st.lists(st.tuples(st.integers(0, 420),  # day since origin
                                             st.sampled_from([S1, S2, S3]),  # store of sale
                                             st.integers(-50, 900)),  # net_minor
                                   max_size=7)),
                min_size=1, max_size=9),
       st.lists(st.tuples(st.integers(0, 420), st.sampled_from([S1, S2, S3]),
                          st.integers(1, 500)), max_size=3),
       st.booleans())
def test_grouped_views_equal_one_view_per_store(
        history: list[tuple[str | None, list[tuple[int, str, int]]]],
        walk_ins: list[tuple[int, str, int]], stranger: bool) -> None:
    """The nightly refresh's grouped views give, for every store and for each store, the
    very reports of one call per scope: members split by home store (some without one,
    a buyer the members table lacks), sales at their own and other stores, refunds."""
    origin = date(2025, 10, 1)
    period = Period(date(2026, 1, 1), date(2026, 9, 20))
    people = [(f"m{i}", home, origin + timedelta(days=7 * i)) for i, (home, _) in
              enumerate(history)]
    members = ibis.memtable({
        "member_id": [m for m, _, _ in people],
        "joined_at": [_noon(d) for _, _, d in people],
        "home_store_id": [h for _, h, _ in people],
        "status": ["active"] * len(people), "tier_code": [None] * len(people),
    }, schema={"member_id": "string", "joined_at": "timestamp('UTC')",
               "home_store_id": "string", "status": "string", "tier_code": "string"})
    rows: list[tuple[str | None, date, int]] = []
    stores: list[str] = []
    for (member, _, _), (_, bought) in zip(people, history, strict=True):
        for offset, store, net in bought:
            rows.append((member, origin + timedelta(days=offset), net))
            stores.append(store)
    for offset, store, net in walk_ins:
        rows.append((None, origin + timedelta(days=offset), net))
        stores.append(store)
    if stranger:  # bought at S1 and S2, not in the members table
        rows += [("stranger", date(2026, 4, 1), 300), ("stranger", date(2026, 5, 2), 40)]
        stores += [S1, S2]
    if not rows:
        rows, stores = [(None, origin, 1)], [S1]
    sales = sales_table(rows, stores=stores)
    ids = [S1, S2, S3]
    grouped = {
        "bucket": views.leaky_buckets(sales, members, period=period, store_ids=ids,
                                      lapse_days=60),
        "joined": views.cohort_retentions(sales, members, period=period, store_ids=ids),
        "first": views.cohort_retentions(sales, members, period=period, store_ids=ids,
                                         basis=CohortBasis.FIRST_PURCHASE),
        "repeat": views.repeat_rates(sales, members, period=period, store_ids=ids),
        "pareto": views.paretos(sales, period=period, store_ids=ids, points=7),
    }
    for key in (None, S1, S2, S3):
        scope = None if key is None else [key]
        one = {
            "bucket": views.leaky_bucket(sales, members, period=period, store_ids=scope,
                                         lapse_days=60),
            "joined": views.cohort_retention(sales, members, period=period,
                                             store_ids=scope),
            "first": views.cohort_retention(sales, members, period=period, store_ids=scope,
                                            basis=CohortBasis.FIRST_PURCHASE),
            "repeat": views.repeat_rate(sales, members, period=period, store_ids=scope),
            "pareto": views.pareto(sales, period=period, store_ids=scope, points=7),
        }
        for view, report in one.items():
            assert grouped[view][key] == report, (view, key)
    assert grouped["pareto"][None].total_revenue_minor == sum(
        net for _, day, net in rows if period.first_on <= day <= period.last_on)


# --- the grouped views against their previous queries -----------------------------------
#
# ``_paretos``, ``_cohort_counts`` and ``_bucket_counts`` as they were before the one-pass
# Pareto, the cohorts' period filter and the leaky bucket's spell edges, verbatim (only
# renamed): the reports must stay the very same on random histories.

def _ref_paretos(s: ir.Table, *, period: Period, stores: list[str], top_fraction: float,
             points: int) -> dict[ScopeKey, ParetoReport]:
    """The reports of the sales ``s`` (key None) and, for each of ``stores``, of its sales
    (key: the id as text)."""
    store = s.store_id.cast("string")
    sums = {"total": s.net_minor.sum(),
            "members": s.net_minor.sum(where=s.member_id.notnull()),
            "walk_ins": s.net_minor.sum(where=s.member_id.isnull())}
    by_store: dict[str | None, dict[str, object]] = {}
    if stores:
        for r in s.group_by(store=store).aggregate(**sums).to_pyarrow().to_pylist():
            by_store[None if r["store"] is None else str(r["store"])] = r
    else:
        by_store[None] = _one_row(s.aggregate(**sums))

    bought = s.filter(s.member_id.notnull())
    spend = bought.group_by("member_id").aggregate(revenue=bought.net_minor.sum())
    spend = spend.select(scope=ibis.literal(WHOLE, "string"), member_id=spend.member_id,
                         revenue=spend.revenue)
    if stores:
        mine = bought.filter(bought.store_id.cast("string").isin(stores))
        mine = mine.group_by(scope=mine.store_id.cast("string"), member_id=mine.member_id
                             ).aggregate(revenue=mine.net_minor.sum())
        spend = spend.union(mine.select("scope", "member_id", "revenue"))
    spend = spend.filter(spend.revenue > 0)
    order = [ibis.desc(spend.revenue), spend.member_id]
    ranked = spend.mutate(
        rank=ibis.row_number().over(ibis.window(group_by="scope", order_by=order)) + 1,
        cum=spend.revenue.sum().over(ibis.cumulative_window(group_by="scope",
                                                            order_by=order)),
        n=spend.revenue.count().over(ibis.window(group_by="scope")),
    )
    # The member at rank k covers the members' interval [(k-1)/n, k/n]; its part inside
    # the top fraction is clip(f·n − (k−1), 0, 1): 1 for the members wholly inside, a
    # fraction for at most one member. The top revenue is their integer sum plus that one
    # product, added once in Python: the same float whatever order an engine sums in.
    inside = (ranked.n * top_fraction - (ranked.rank - 1)).clip(lower=0, upper=1)
    partly = (inside > 0) & (inside < 1)
    summaries = {str(r["scope"]): r for r in ranked.group_by("scope").aggregate(
        n=ranked.count(), positive=ranked.revenue.sum(),
        whole=ranked.revenue.sum(where=inside >= 1),
        part=(ranked.revenue * inside).sum(where=partly)).to_pyarrow().to_pylist()}
    step = (ranked.rank * points + ranked.n - 1) // ranked.n  # ceil(rank·points / n)
    curves: dict[str, list[tuple[int, int, int]]] = {}
    for r in ranked.group_by(scope=ranked.scope, step=step).aggregate(
            rank=ranked.rank.max(), cum=ranked.cum.max()).to_pyarrow().to_pylist():
        curves.setdefault(str(r["scope"]), []).append(
            (int(r["step"]), int(r["rank"]), int(r["cum"])))

    out: dict[ScopeKey, ParetoReport] = {}
    for key in [None, *stores]:
        rows = list(by_store.values()) if key is None else \
            [by_store[key]] if key in by_store else []
        total = sum(_int(r.get("total")) for r in rows)
        member_total = sum(_int(r.get("members")) for r in rows)
        walk_ins = sum(_int(r.get("walk_ins")) for r in rows)
        summary = summaries.get(WHOLE if key is None else key, {})
        n, positive = _int(summary.get("n")), _int(summary.get("positive"))
        curve = [ParetoPoint(0.0, 0.0)]
        if n and positive:
            curve += [ParetoPoint(rank / n, cum / positive) for _, rank, cum in
                      sorted(curves.get(WHOLE if key is None else key, []))]
        top = float(_int(summary.get("whole"))) + _float(summary.get("part"))
        out[key] = ParetoReport(
            period=period, total_revenue_minor=total, member_revenue_minor=member_total,
            walk_in_revenue_minor=walk_ins,
            member_revenue_share=_rate(member_total, total) if total > 0 else None,
            purchasing_members=n, top_fraction=top_fraction,
            top_share=top / positive if positive else None, curve=tuple(curve))
    return out


def _ref_cohort_counts(days: ir.Table, scope: ir.Table, *, period: Period, tz: str,
                   basis: CohortBasis, by_home: bool) -> dict[HomeKey, CohortCounts]:
    """Cohort sizes and active members (cohort, months since) of the members ``scope``
    and the purchase ``days``, per home store (``by_home``) or all together (key None)."""
    end = period.bounds(tz)[1]
    active = days.filter(days.day <= day_number(period.last_on)).select(
        "member_id", "month").distinct()
    if basis is CohortBasis.JOINED:
        joined = scope.filter(scope.joined_at < end)
        cohorts = joined.select(member_id=joined.member_id,
                                cohort=local_month(joined.joined_at, tz, around=period),
                                home=joined.home_store_id.cast("string"))
    else:
        cohorts = active.group_by("member_id").aggregate(cohort=active.month.min())
        if by_home:
            cohorts = with_home(cohorts, member_homes(scope))
    keys = ["home"] if by_home else []
    cohorts = cohorts.select("member_id", "cohort", *keys)
    cohorts = cohorts.filter((cohorts.cohort >= period.first_month)
                             & (cohorts.cohort <= period.last_month))
    out: dict[HomeKey, CohortCounts] = {}
    for r in cohorts.group_by([*keys, "cohort"]).aggregate(
            size=cohorts.count()).to_pyarrow().to_pylist():
        out.setdefault(_home(r), ({}, {}))[0][int(r["cohort"])] = int(r["size"])
    j = active.join(cohorts, "member_id")
    j = j.mutate(k=j.month - j.cohort).filter(lambda t: t.k >= 0)
    # a member has one home store: distinct members per home store add up to distinct
    # members over all of them
    for r in j.group_by([*keys, "cohort", "k"]).aggregate(
            active=j.member_id.nunique()).to_pyarrow().to_pylist():
        out.setdefault(_home(r), ({}, {}))[1][(int(r["cohort"]), int(r["k"]))] = \
            int(r["active"])
    return out


def _ref_bucket_counts(days: ir.Table, scope: ir.Table, *, period: Period, tz: str,
                   lapse_days: int, grain: Grain, homes: ir.Table | None
                   ) -> dict[HomeKey, dict[int, dict[str, int]]]:
    """Every count of the leaky bucket, by bucket, of the purchase ``days`` and the
    members ``scope`` (joins), per home store (with ``homes``) or all together (None)."""
    last_n = day_number(period.last_on)
    span = grain.months
    buckets = _buckets(period, grain)
    bucket_table = ibis.memtable(
        {"bucket": [b[0] for b in buckets], "first_n": [b[1] for b in buckets],
         "next_n": [b[2] for b in buckets]},
        schema={"bucket": "int64", "first_n": "int64", "next_n": "int64"})
    keys = [] if homes is None else ["home"]
    out: dict[HomeKey, dict[int, dict[str, int]]] = {}

    def add(rows: list[dict[str, object]]) -> None:
        for r in rows:
            counts = out.setdefault(_home(r), {}).setdefault(_int(r["bucket"]), {})
            counts.update({k: _int(v) for k, v in r.items() if k not in ("home", "bucket")})

    days = days.filter(days.day <= last_n)
    by_member = ibis.window(group_by="member_id", order_by="day")
    gaps = days.mutate(previous=days.day.lag().over(by_member))
    gaps = gaps.mutate(opens=(gaps.previous.isnull()
                              | (gaps.day - gaps.previous > lapse_days)).cast("int64"))
    numbered = gaps.mutate(spell=gaps.opens.sum().over(
        ibis.cumulative_window(group_by="member_id", order_by="day")))
    spells = numbered.group_by(["member_id", "spell"]).aggregate(
        start_n=numbered.day.min(), end_n=numbered.day.max() + lapse_days)
    if homes is not None:
        spells = with_home(spells, homes)

    b = bucket_table
    j = spells.join(b, [spells.start_n < b.next_n, spells.end_n >= b.first_n])
    starts_inside = j.start_n >= j.first_n
    ends_inside = j.end_n < j.next_n
    add(j.group_by([*keys, "bucket"]).aggregate(
        active_start=(j.start_n < j.first_n).cast("int64").sum(),
        new=(starts_inside & (j.spell == 1)).cast("int64").sum(),
        reactivated=(starts_inside & (j.spell > 1)).cast("int64").sum(),
        lapsed=ends_inside.cast("int64").sum(),
        churned=(ends_inside & ~starts_inside).cast("int64").sum(),
        active_end=(~ends_inside).cast("int64").sum(),
    ).to_pyarrow().to_pylist())

    visits = days.select(member_id=days.member_id, bucket=days.month // span).distinct()
    visits = visits.mutate(previous=visits.bucket.lag().over(
        ibis.window(group_by="member_id", order_by="bucket")))
    if homes is not None:
        visits = with_home(visits, homes)
    add(visits.group_by([*keys, "bucket"]).aggregate(
        purchasers=visits.count(),
        returning=(visits.previous == visits.bucket - 1).fill_null(False).cast("int64").sum()
    ).to_pyarrow().to_pylist())

    end = period.bounds(tz)[1]
    joined = scope.filter(scope.joined_at < end)
    joined = joined.mutate(bucket=local_month(joined.joined_at, tz, around=period) // span,
                           home=joined.home_store_id.cast("string"))
    add(joined.group_by([*keys, "bucket"]).aggregate(joined=joined.count())
        .to_pyarrow().to_pylist())
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([S1, S2, None]),  # home store (None: none)
                          st.lists(st.tuples(st.integers(0, 800),  # day since origin
                                             st.sampled_from([S1, S2, S3]),
                                             st.integers(-50, 900)),
                                   max_size=12)),
                min_size=1, max_size=10),
       st.sampled_from([1, 20, 31, 45, 60, 90, 92, 120, 400]),
       st.sampled_from(list(Grain)), st.booleans(), st.integers(0, 400))
def test_views_equal_their_previous_queries(
        history: list[tuple[str | None, list[tuple[int, str, int]]]], lapse_days: int,
        grain: Grain, stranger: bool, start: int) -> None:
    origin = date(2024, 6, 1)
    first_on = origin + timedelta(days=start)
    period = Period(first_on, first_on + timedelta(days=200 + start // 2))
    people = [(f"m{i}", home, origin + timedelta(days=11 * i)) for i, (home, _) in
              enumerate(history)]
    members = ibis.memtable({
        "member_id": [m for m, _, _ in people],
        "joined_at": [_noon(d) for _, _, d in people],
        "home_store_id": [h for _, h, _ in people],
        "status": ["active"] * len(people), "tier_code": [None] * len(people),
    }, schema={"member_id": "string", "joined_at": "timestamp('UTC')",
               "home_store_id": "string", "status": "string", "tier_code": "string"})
    rows: list[tuple[str | None, date, int]] = []
    stores: list[str] = []
    for (member, _, _), (_, bought) in zip(people, history, strict=True):
        for offset, store, net in bought:
            rows.append((member, origin + timedelta(days=offset), net))
            stores.append(store)
    if stranger:
        rows += [("stranger", origin + timedelta(days=300), 300), (None, origin, 5)]
        stores += [S1, S2]
    if not rows:
        rows, stores = [(None, origin, 1)], [S1]
    sales = sales_table(rows, stores=stores)
    ids = [S1, S2, S3]

    def reports() -> list[Any]:
        out: list[Any] = [
            views.leaky_buckets(sales, members, period=period, store_ids=ids,
                                lapse_days=lapse_days, grain=grain),
            views.cohort_retentions(sales, members, period=period, store_ids=ids),
            views.cohort_retentions(sales, members, period=period, store_ids=ids,
                                    basis=CohortBasis.FIRST_PURCHASE),
            views.paretos(sales, period=period, store_ids=ids, points=7,
                          top_fraction=0.3),
        ]
        for scope in (None, [S1], [S2]):
            out += [views.leaky_bucket(sales, members, period=period, store_ids=scope,
                                       lapse_days=lapse_days, grain=grain),
                    views.cohort_retention(sales, members, period=period, store_ids=scope,
                                           basis=CohortBasis.FIRST_PURCHASE),
                    views.pareto(sales, period=period, store_ids=scope, points=5)]
        return out

    now = reports()
    with mock.patch.object(views, "_paretos", _ref_paretos), \
            mock.patch.object(views, "_cohort_counts", _ref_cohort_counts), \
            mock.patch.object(views, "_bucket_counts", _ref_bucket_counts):
        before = reports()
    assert now == before


# --- local time, id types ---------------------------------------------------------------

def test_days_follow_the_zone_when_sales_have_no_local_day() -> None:
    late = datetime(2026, 1, 31, 20, tzinfo=UTC)  # 1 February, 04:00 in Shanghai
    sales = sales_table([("a", date(2026, 1, 31), 10), ("a", date(2026, 1, 31), 10)],
                        with_local_day=False,
                        times=[datetime(2026, 1, 31, 1, tzinfo=UTC), late])
    members = members_table([("a", date(2026, 1, 1))])
    in_utc = views.repeat_rate(sales, members, period=Q1)
    in_shanghai = views.repeat_rate(sales, members, period=Q1, tz="Asia/Shanghai")
    assert (in_utc.repeaters, in_shanghai.repeaters) == (0, 1)
    jan = views.cohort_retention(sales, members, period=Q1, tz="Asia/Shanghai")
    assert jan.cohorts[0].active == (1, 1, 0)


def test_local_time_follows_daylight_saving_changes() -> None:
    period = Period(date(2026, 1, 1), date(2026, 12, 31))
    instants = [datetime(2026, 3, 8, 6, 59, tzinfo=UTC),   # 01:59 EST
                datetime(2026, 3, 8, 7, 0, tzinfo=UTC),    # 03:00 EDT
                datetime(2026, 11, 1, 5, 59, tzinfo=UTC),  # 01:59 EDT
                datetime(2026, 11, 1, 6, 0, tzinfo=UTC)]   # 01:00 EST
    t = ibis.memtable({"at": instants}, schema={"at": "timestamp('UTC')"})
    local = t.select(local=views.local_time(t.at, "America/New_York", around=period))
    got = [v.replace(tzinfo=None) for v in local.to_pyarrow().column("local").to_pylist()]
    assert [(v.hour, v.minute) for v in got] == [(1, 59), (3, 0), (1, 59), (1, 0)]


def test_uuid_columns_in_duckdb_are_filtered_by_store() -> None:
    s1, s2, a, b = (uuid.uuid4() for _ in range(4))
    con = ibis.duckdb.connect()
    arrow = pa.table({"sale_id": [str(uuid.uuid4()) for _ in range(2)],
                      "member_id": [str(a), str(b)], "store_id": [str(s1), str(s2)],
                      "occurred_on": [date(2026, 2, 1)] * 2, "net_minor": [100, 300]})
    con.con.register("arrow_sales", arrow)
    con.raw_sql("CREATE TABLE sales AS SELECT sale_id::UUID AS sale_id, "
                "member_id::UUID AS member_id, store_id::UUID AS store_id, occurred_on, "
                "net_minor FROM arrow_sales")
    report = views.pareto(con.table("sales"), period=Q1, store_ids=[s2])
    assert (report.total_revenue_minor, report.purchasing_members) == (300, 1)


# --- revenue at risk, tiers, liabilities ------------------------------------------------

def test_revenue_at_risk_sums_clv_below_the_threshold() -> None:
    scores = ibis.memtable({"member_id": ["a", "b", "c", "d"],
                            "p_alive": [0.9, 0.3, 0.1, None],
                            "clv_minor": [1000, 400, 100, 50]})
    members = members_table([(m, JAN) for m in "abcd"], home={"c": S2})
    risk = views.revenue_at_risk(scores, threshold=0.5)
    assert (risk.members_scored, risk.members_at_risk) == (3, 2)
    assert (risk.clv_at_risk_minor, risk.clv_total_minor) == (500, 1500)
    assert risk.share == pytest.approx(1 / 3)
    at_s1 = views.revenue_at_risk(scores, threshold=0.5, members=members, store_ids=[S1])
    assert (at_s1.members_at_risk, at_s1.clv_at_risk_minor) == (1, 400)


def test_tier_migration_from_start_to_end_of_period() -> None:
    before = date(2025, 3, 1)
    members = members_table(
        [("m1", before), ("m2", before), ("m3", before), ("m4", date(2026, 2, 10)),
         ("m5", before), ("m6", date(2026, 5, 1))],
        tiers={"m1": "silver", "m2": "bronze", "m3": "gold", "m4": "bronze", "m5": "gold",
               "m6": "bronze"})
    changes = ibis.memtable({
        "member_id": ["m1", "m1", "m3", "m4", "m5", "m5"],
        "from_tier": [None, "bronze", "silver", None, "gold", "silver"],
        "to_tier": ["bronze", "silver", "gold", "bronze", "silver", "gold"],
        "at": [_noon(d) for d in (date(2025, 6, 1), date(2026, 2, 1), date(2026, 5, 1),
                                  date(2026, 2, 10), date(2025, 12, 1), date(2026, 3, 1))],
    }, schema={"member_id": "string", "from_tier": "string", "to_tier": "string",
               "at": "timestamp('UTC')"})
    migration = views.tier_migration(changes, members, period=Q1,
                                     tiers=["bronze", "silver", "gold"])
    assert [(f.from_tier, f.to_tier, f.members) for f in migration.flows] == [
        (None, "bronze", 1),       # m4 joined in the period
        ("bronze", "bronze", 1),   # m2 never changed
        ("bronze", "silver", 1),   # m1 moved up in February
        ("silver", "silver", 1),   # m3 moves up only in May
        ("silver", "gold", 1),     # m5 back up in March
    ]
    assert migration.matrix() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_points_liability_values_outstanding_and_expiring_points() -> None:
    as_of = datetime(2026, 1, 15, tzinfo=UTC)
    lots = ibis.memtable({
        "member_id": ["a", "a", "b", "b", "c"],
        "remaining": [500, 300, 200, 0, 1000],
        "is_pending": [False, False, True, False, False],
        "expires_at": [datetime(2026, 12, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC),
                       None, datetime(2026, 2, 1, tzinfo=UTC),
                       datetime(2026, 1, 1, tzinfo=UTC)],  # c's lot has expired
    }, schema={"member_id": "string", "remaining": "int64", "is_pending": "boolean",
               "expires_at": "timestamp('UTC')"})
    liability = views.points_liability(lots, as_of=as_of, points_per_major_redeemed=3)
    assert (liability.outstanding_points, liability.available_points,
            liability.pending_points) == (1000, 800, 200)
    assert liability.liability_minor == 33333           # 1000 × 100 / 3, rounded
    assert (liability.expiring_points, liability.expiring_liability_minor) == (300, 10000)
    members = members_table([("a", JAN), ("b", JAN), ("c", JAN)], home={"a": S2})
    only_s2 = views.points_liability(lots, as_of=as_of, points_per_major_redeemed=100,
                                     members=members, store_ids=[S2])
    assert (only_s2.outstanding_points, only_s2.liability_minor) == (800, 800)
    with pytest.raises(ValidationFailed) as err:
        views.points_liability(lots, as_of=as_of, points_per_major_redeemed=0)
    assert err.value.field == "points_per_major_redeemed"


def test_stored_value_liability_is_principal_plus_bonus() -> None:
    accounts = ibis.memtable({"member_id": ["a", "b", "c"], "principal_minor": [1000, 0, 500],
                              "bonus_minor": [100, 0, 0]})
    liability = views.stored_value_liability(accounts)
    assert (liability.accounts, liability.principal_minor, liability.bonus_minor,
            liability.total_minor) == (2, 1500, 100, 1600)


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        Period(date(2026, 2, 1), date(2026, 1, 1))
    assert err.value.field == "last_on"
