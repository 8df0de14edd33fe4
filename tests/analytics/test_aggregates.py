"""What the nightly refresh precomputes for the dashboard and the member page equals what
is computed on demand (a small generated history, two stores), a rewritten day replaces
its rows, and the days follow the scores when snapshots are pruned."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from patron.analytics import aggregates, dashboard, recommend, service, source, views
from patron.analytics.tables import DashboardGroup, NextBestProduct
from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.analytics.history import History, at
from tests.factories import World

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 22)  # the test clock's yesterday in Shanghai
RATE = 100  # points per currency unit redeemed


def generate(db: Database, world: World, *, members: int = 36, seed: int = 5
             ) -> dict[str, list[uuid.UUID]]:
    """Members of stores A and B (some buying in the other store too) buying baskets of eight
    products in three categories over eighteen months, walk-ins, points, stored value."""
    rng = random.Random(seed)
    a, b = world.store_a.id, world.store_b.id
    bought: dict[str, list[uuid.UUID]] = {"buyers": [], "idle": []}
    with db.engine.begin() as conn:
        h = History(conn)
        products = [h.product(cat, 500 + 300 * i)
                    for i, cat in enumerate(("coffee", "coffee", "tea", "tea", "tea",
                                             "snacks", "snacks", "snacks"))]
        for i in range(members):
            store = a if i % 3 else b
            joined = DAY - timedelta(days=rng.randint(20, 540))
            member = h.member(store, at(joined.isoformat(), 2))
            if i % 9 == 4:
                bought["idle"].append(member)
                continue
            bought["buyers"].append(member)
            day = joined
            while day <= DAY:
                basket = rng.sample(products[(i % 2) * 3:(i % 2) * 3 + 5], rng.randint(1, 3))
                h.sale(member, store if rng.random() < 0.8 else (b if store == a else a),
                       at(day.isoformat(), 3 + i % 5),
                       [(p, rng.randint(1, 2), 500 + 100 * k) for k, p in enumerate(basket)])
                day += timedelta(days=rng.randint(10, 120) if i % 4 else rng.randint(150, 400))
            if i % 5 == 0:
                h.points(member, at("2026-10-01"), 200 + 10 * i)
            if i % 7 == 0:
                h.wallet(member, at("2026-10-02"), 5_000, 500)
        for k in range(6):
            h.sale(None, a if k % 2 else b, at((DAY - timedelta(days=17 * k)).isoformat(), 5),
                   [(products[k], 1, 800)])
    return bought


def _same(figures: dashboard.HistoryFigures) -> dashboard.HistoryFigures:
    """Without when and how long: the rest must be equal to the last float."""
    return dataclasses.replace(figures, computed_at=datetime(2026, 1, 1, tzinfo=UTC),
                               seconds=0.0)


def test_dashboard_figures_from_the_refresh_equal_those_computed_on_demand(
        db: Database, world: World, clock: FixedClock) -> None:
    generate(db, world)
    service.refresh(db, clock, timezone=TZ, as_of=DAY)
    owner = auth.principal_for_user(world.owner)
    manager_b = auth.principal_for_user(world.manager_b)
    a, b = world.store_a.id, world.store_b.id
    with db.read() as session:
        assert aggregates.has_groups(session, DAY)
        groups = session.scalar(select(func.count()).select_from(DashboardGroup))
        assert groups is not None and 0 < groups <= 2 * 150
        # every store, and one store (a manager's scope): stored == computed on demand
        for actor in (owner, manager_b):
            scope = dashboard.resolve_scope(actor=actor, clock=clock, tz=TZ)
            assert scope.period == aggregates.default_period(DAY)
            stored = dashboard.stored_history_figures(
                session, actor=actor, scope=scope, points_per_major_redeemed=RATE,
                minor_per_major=100)
            assert stored is not None, scope
            live = dashboard.history_figures(db, clock=clock, actor=actor, scope=scope,
                                             points_per_major_redeemed=RATE,
                                             minor_per_major=100)
            assert _same(stored) == _same(live)
            assert stored.active_members > 0 and stored.points_outstanding > 0
        whole = dashboard.resolve_scope(actor=owner, clock=clock, tz=TZ)
        assert dashboard.stored_history_figures(
            session, actor=owner, scope=dataclasses.replace(whole, store_ids=frozenset({a})),
            points_per_major_redeemed=RATE, minor_per_major=100) is not None
        for stores in (None, frozenset({a}), frozenset({b}), frozenset({a, b})):
            scope = dataclasses.replace(whole, store_ids=stores)
            summed = dashboard.snapshot_figures(session, actor=owner, scope=scope)
            scanned = dashboard.snapshot_figures(session, actor=owner, scope=scope, scan=True)
            assert summed == scanned, stores
            assert summed is not None and summed.members_scored > 0
        # another period, a time zone the refresh did not use, several stores: not stored
        for other in (dataclasses.replace(whole, period=views.Period(date(2026, 9, 1), DAY)),
                      dataclasses.replace(whole, tz="UTC"),
                      dataclasses.replace(whole, store_ids=frozenset({a, b}))):
            assert dashboard.stored_history_figures(
                session, actor=owner, scope=other, points_per_major_redeemed=RATE,
                minor_per_major=100) is None


def test_one_grouped_pass_gives_each_scopes_history_numbers(
        db: Database, world: World, clock: FixedClock) -> None:
    """``store_histories`` (the refresh's one pass) against ``history_numbers`` per scope
    (what the dashboard computes on demand), for every store and each store, floats
    included (members buy at their home store and at the other one; ``test_views``
    covers members without a home store, which the OLTP schema does not allow)."""
    generate(db, world, members=30, seed=11)
    period = aggregates.default_period(DAY)
    with source.open_source(db, as_of=DAY, timezone=TZ,
                            tables=dashboard.HISTORY_TABLES) as src:
        stores = sorted([world.store_a.id, world.store_b.id])
        grouped = aggregates.store_histories(src, period=period, tz=TZ, store_ids=stores)
        assert list(grouped) == [None, *stores]
        for store in grouped:
            scope = None if store is None else frozenset({store})
            one = aggregates.history_numbers(src, period=period, tz=TZ, store_ids=scope)
            assert grouped[store] == one, store
    everyone, a, b = grouped[None], grouped[stores[0]], grouped[stores[1]]
    assert everyone.points_outstanding == a.points_outstanding + b.points_outstanding
    assert everyone.active_members > a.active_members > 0


def _same_picks(got: dict[uuid.UUID, list[tuple[str, int, str, float]]],
                want: dict[uuid.UUID, list[tuple[str, int, str, float]]]) -> None:
    """The same picks in the same order, scores equal to the engine's rounding: a sum of
    similarities may differ in its last bits with the order DuckDB's threads add it in."""
    assert {m: [row[:3] for row in picks] for m, picks in got.items()} == \
        {m: [row[:3] for row in picks] for m, picks in want.items()}
    for m, picks in got.items():
        assert [row[3] for row in picks] == pytest.approx([row[3] for row in want[m]],
                                                          rel=1e-12)


def test_next_best_products_are_stored_rewritten_and_pruned_with_the_scores(
        db: Database, world: World, clock: FixedClock) -> None:
    bought = generate(db, world, members=18)
    member = bought["buyers"][0]
    with db.read() as session:  # no snapshot yet: computed on demand
        assert recommend.stored_next_best(session, member_id=member) is None
        assert recommend.next_best(session, db, member, clock=clock, tz=TZ)
    service.refresh(db, clock, timezone=TZ, as_of=DAY)
    with source.open_source(db, as_of=DAY, timezone=TZ,
                            tables=["lines", "products", "categories"]) as src:
        again = recommend.replenishable_products(src.products, src.categories)
        rows = recommend.recommendations(
            src.lines, as_of=DAY, replenishable=again, tz=TZ,
            settings=recommend.RecommendSettings(top_n=aggregates.NEXT_BEST)
        ).order_by(["member_id", "rank"]).to_pyarrow().to_pylist()
    live: dict[uuid.UUID, list[tuple[str, int, str, float]]] = {
        m: [] for m in bought["buyers"] + bought["idle"]}
    for r in rows:
        live[uuid.UUID(r["member_id"])].append(
            (r["product_id"], r["rank"], r["because"], r["score"]))

    def stored() -> dict[uuid.UUID, list[tuple[str, int, str, float]]]:
        with db.read() as session:
            found = {m: recommend.stored_next_best(session, member_id=m) for m in live}
        return {m: [(p.product_id, p.rank, p.because, p.score) for p in picks or []]
                for m, picks in found.items()}

    first = stored()
    _same_picks(first, live)
    assert sum(bool(v) for v in live.values()) >= len(bought["buyers"]) // 2
    assert first[bought["idle"][0]] == []  # a snapshot with rows: none for them, not None
    with db.read() as session:
        assert [p.product_id for p in recommend.next_best(
            session, db, member, clock=clock, tz=TZ, top_n=2)] == \
            [p for p, *_ in live[member][:2]]
        counts = aggregates.day_counts(session, DAY)
    assert counts["dashboard_history"] == 3  # every store, A, B
    service.refresh(db, clock, timezone=TZ, as_of=DAY)  # the same day again: replaced
    _same_picks(stored(), first)
    with db.read() as session:
        assert aggregates.day_counts(session, DAY) == counts
    # an older day refreshed with keep=1: written, then pruned with its scores
    service.refresh(db, clock, timezone=TZ, as_of=DAY - timedelta(days=1), keep=1)
    with db.read() as session:
        assert aggregates.day_counts(session, DAY - timedelta(days=1)) == {
            "dashboard_groups": 0, "dashboard_history": 0, "next_best_products": 0}
        assert aggregates.day_counts(session, DAY) == counts
        assert set(session.scalars(select(NextBestProduct.as_of).distinct())) == {DAY}


def test_history_numbers_survive_the_json_round_trip() -> None:
    period = views.Period(date(2026, 1, 1), date(2026, 1, 31))
    numbers = aggregates.HistoryNumbers(
        active_members=3, new_members=1,
        repeat=views.RepeatRate(period=period, purchasers=3, repeaters=1,
                                          rate=1 / 3),
        churn_rate=None,
        pareto=views.ParetoReport(
            period=period, total_revenue_minor=10, member_revenue_minor=7,
            walk_in_revenue_minor=3, member_revenue_share=0.7, purchasing_members=2,
            top_fraction=0.2, top_share=None,
            curve=(views.ParetoPoint(member_share=0.5, revenue_share=0.1 + 0.2),)),
        bucket=views.LeakyBucket(period=period, grain=views.Grain.MONTH,
                                           lapse_days=90, periods=()),
        cohorts=views.CohortReport(
            period=period, basis=views.CohortBasis.FIRST_PURCHASE,
            cohorts=(views.Cohort(month=date(2026, 1, 1), size=2, active=(2, 1),
                                            retention=(1.0, 0.5)),)),
        points_outstanding=500, stored_value_minor=12_000)
    assert aggregates.decode(aggregates.HistoryNumbers, aggregates.encode(numbers)) == numbers
