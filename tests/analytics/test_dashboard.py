"""The dashboard's figures on a small hand-built shop, checked against values worked out by
hand (the comments show the arithmetic), with the store and period filters and the roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from patron.analytics import dashboard
from patron.analytics.tables import AnalyticsRun, MemberScore
from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PermissionDenied, ValidationFailed
from patron.core.registry import Base
from tests.analytics.history import History, at
from tests.factories import World

TZ = "Asia/Shanghai"
SNAPSHOT_DAY = date(2026, 11, 22)
#: September to November 2026 (the test clock's "yesterday" is 22 November).
PERIOD = (date(2026, 9, 1), date(2026, 11, 22))


@dataclass
class Shop:
    """Ids of the hand-built data set (see ``build_shop``)."""

    store_a: uuid.UUID
    store_b: uuid.UUID
    m1: uuid.UUID
    m2: uuid.UUID
    m3: uuid.UUID
    m4: uuid.UUID
    m5: uuid.UUID


def _score(member: uuid.UUID, *, r: int | None, fm: int | None, segment: str | None,
           stage: str, p_alive: float | None, clv: int | None, net_365: int) -> MemberScore:
    return MemberScore(
        as_of=SNAPSHOT_DAY, member_id=member, purchases=1 if r else 0, total_net_minor=net_365,
        net_90_minor=0, net_prev_90_minor=0, net_365_minor=net_365, r_score=r, f_score=fm,
        m_score=fm, fm_score=fm, rfm_segment=segment, p_alive=p_alive, clv_minor=clv,
        lifecycle_stage=stage, satisfaction="unknown", loyalty_type="none",
        replenishment_categories=0, bond_financial=0.0, bond_social=0.0, bond_structural=0.0)


def build_shop(db: Database, world: World) -> Shop:
    """Five members of stores A and B, their sales, points, stored value and a snapshot.

    All sales at 04:00 UTC (noon in Shanghai), so UTC and local days agree:

    * m1 (A) joined 2026-01-10, bought 01-10 (¥100), 09-05 (¥200), 09-20 (¥50)
    * m2 (A) joined 2026-09-02, bought 09-02 (¥300), 10-15 (¥100)
    * m3 (B) joined 2026-05-01, bought 05-01 (¥400) and never again
    * m4 (B) joined 2026-10-03, bought 10-03 (¥80)
    * m5 (A) joined 2026-11-01, no purchase
    * walk-ins: 10-10 at A (¥120), 10-11 at B (¥30)
    * points available: m1 500, m4 300; stored value: m2 ¥100 principal + ¥20 bonus
    """
    a, b = world.store_a.id, world.store_b.id
    with db.engine.begin() as conn:
        h = History(conn)
        m1 = h.member(a, at("2026-01-10", 3))
        m2 = h.member(a, at("2026-09-02", 3))
        m3 = h.member(b, at("2026-05-01", 3))
        m4 = h.member(b, at("2026-10-03", 3))
        m5 = h.member(a, at("2026-11-01", 3))
        for member, store, day, amount in (
                (m1, a, "2026-01-10", 10_000), (m1, a, "2026-09-05", 20_000),
                (m1, a, "2026-09-20", 5_000), (m2, a, "2026-09-02", 30_000),
                (m2, a, "2026-10-15", 10_000), (m3, b, "2026-05-01", 40_000),
                (m4, b, "2026-10-03", 8_000), (None, a, "2026-10-10", 12_000),
                (None, b, "2026-10-11", 3_000)):
            h.sale(member, store, at(day, 4), total=amount)
        h.points(m1, at("2026-09-20", 4), 500)
        h.points(m4, at("2026-10-03", 4), 300)
        h.wallet(m2, at("2026-09-02", 4), 10_000, 2_000)
    with db.write() as s:
        s.add_all([
            _score(m1, r=5, fm=4, segment="champions", stage="growing", p_alive=0.9,
                   clv=30_000, net_365=35_000),
            _score(m2, r=4, fm=4, segment="loyal", stage="new", p_alive=0.95, clv=50_000,
                   net_365=40_000),
            _score(m3, r=1, fm=2, segment="hibernating", stage="lapsed", p_alive=0.2,
                   clv=4_000, net_365=40_000),
            _score(m4, r=5, fm=1, segment="new", stage="new", p_alive=0.4, clv=6_000,
                   net_365=8_000),
            _score(m5, r=None, fm=None, segment=None, stage="new", p_alive=None, clv=None,
                   net_365=0),
        ])
        now = datetime(2026, 11, 23, 1, tzinfo=UTC)
        s.add(AnalyticsRun(as_of=SNAPSHOT_DAY, started_at=now, finished_at=now,
                           status="succeeded", stages={}, params={}, members=5, error=""))
    return Shop(a, b, m1, m2, m3, m4, m5)


def add_campaign(db: Database, shop: Shop, *, launched: datetime, treated: list[uuid.UUID],
                 control: list[uuid.UUID], name: str = "Autumn win-back",
                 store_ids: list[str] | None = None) -> uuid.UUID:
    """A sent campaign whose arms are ``treated`` and ``control`` (14-day windows from
    ``launched``), written straight into the tables as ``launch`` would leave them."""
    t = Base.metadata.tables
    segment, campaign = uuid.uuid4(), uuid.uuid4()
    with db.engine.begin() as conn:
        conn.execute(insert(t["segments"]), [{
            "id": segment, "name": "everyone", "description": "", "rules": {}, "store_ids": [],
            "created_by": "test", "created_at": launched, "updated_at": launched}])
        conn.execute(insert(t["campaigns"]), [{
            "id": campaign, "name": name, "kind": "message", "segment_id": segment,
            "rules": {}, "store_ids": store_ids or [], "channel": "sms", "messages": {},
            "schedule": "now", "holdout_pct": 50.0, "seed": 1, "attribution_days": 14,
            "margin_pct": 30.0, "sms_cost_minor": 5, "email_cost_minor": 0, "status": "sent",
            "resumes": 0, "created_by": "test", "created_at": launched, "updated_at": launched,
            "launched_at": launched, "send_time": datetime(2026, 1, 1, 10).time()}])
        conn.execute(insert(t["campaign_members"]), [{
            "campaign_id": campaign, "member_id": m, "arm": arm, "draw": 0.5,
            "run_on": launched.date(), "assigned_at": launched, "starts_at": launched,
            "ends_at": launched + timedelta(days=14)}
            for arm, ms in (("treatment", treated), ("control", control)) for m in ms])
    return campaign


def _actor(db: Database, user: object) -> Principal:
    return auth.principal_for_user(user)  # type: ignore[arg-type]


@pytest.fixture
def shop(db: Database, world: World) -> Shop:
    return build_shop(db, world)


def _scope(owner: Principal, clock: FixedClock, store: uuid.UUID | None = None
           ) -> dashboard.Scope:
    return dashboard.resolve_scope(actor=owner, clock=clock, tz=TZ, store_id=store,
                                   first_on=PERIOD[0], last_on=PERIOD[1])


def test_history_figures_of_every_store_match_the_hand_computed_values(
        db: Database, world: World, clock: FixedClock, shop: Shop) -> None:
    owner = _actor(db, world.owner)
    f = dashboard.history_figures(db, clock=clock, actor=owner, scope=_scope(owner, clock),
                                  points_per_major_redeemed=100, minor_per_major=100)
    # active on 11-22 (a purchase within 90 days): m1 (09-20), m2 (10-15), m4 (10-03)
    assert f.active_members == 3
    assert f.new_members == 3  # joined in the period: m2, m4, m5
    assert (f.repeat.purchasers, f.repeat.repeaters) == (3, 2)  # m1, m2 on two days; m4 once
    assert f.repeat.rate == pytest.approx(2 / 3)
    # active at the start of Sep/Oct/Nov: 0, 2, 3; nobody lapsed in the period
    assert f.churn_rate == 0.0
    buckets = [(p.new, p.reactivated, p.lapsed, p.active_end) for p in f.bucket.periods]
    # Sep: m2 new, m1 back after 238 days; Oct: m4 new; Nov: nothing moves
    assert buckets == [(1, 1, 0, 2), (1, 0, 0, 3), (0, 0, 0, 3)]
    # revenue 88,000: members 25,000 (m1) + 40,000 (m2) + 8,000 (m4), walk-ins 15,000
    assert f.pareto.total_revenue_minor == 88_000
    assert f.pareto.member_revenue_share == pytest.approx(73_000 / 88_000)
    # the top 20 % of 3 buyers is 0.6 of m2: 0.6 × 40,000 of 73,000
    assert f.pareto.top_share == pytest.approx(24_000 / 73_000)
    # joined cohorts: Sep (m2) bought in Sep and Oct; Oct (m4) in Oct; Nov (m5) never
    assert [(c.month, c.size, c.active) for c in f.cohorts.cohorts] == [
        (date(2026, 9, 1), 1, (1, 1, 0)), (date(2026, 10, 1), 1, (1, 0)),
        (date(2026, 11, 1), 1, (0,))]
    # 800 points at 100 points a yuan = ¥8.00; stored value ¥100 + ¥20
    assert (f.points_outstanding, f.points_liability_minor) == (800, 800)
    assert f.stored_value_minor == 12_000


def test_store_filter_keeps_the_stores_members_and_sales(
        db: Database, world: World, clock: FixedClock, shop: Shop) -> None:
    owner = _actor(db, world.owner)
    f = dashboard.history_figures(db, clock=clock, actor=owner,
                                  scope=_scope(owner, clock, shop.store_a),
                                  points_per_major_redeemed=100, minor_per_major=100)
    assert (f.active_members, f.new_members) == (2, 2)  # m1, m2 / m2, m5
    assert f.repeat.rate == 1.0
    # sales at A: m1 25,000, m2 40,000, walk-in 12,000; top 0.4 of m2
    assert f.pareto.member_revenue_share == pytest.approx(65_000 / 77_000)
    assert f.pareto.top_share == pytest.approx(16_000 / 65_000)
    assert (f.points_outstanding, f.stored_value_minor) == (500, 12_000)


def test_period_filter_moves_the_window(
        db: Database, world: World, clock: FixedClock, shop: Shop) -> None:
    owner = _actor(db, world.owner)
    scope = dashboard.resolve_scope(actor=owner, clock=clock, tz=TZ,
                                    first_on=date(2026, 1, 1), last_on=date(2026, 5, 31))
    f = dashboard.history_figures(db, clock=clock, actor=owner, scope=scope,
                                  points_per_major_redeemed=100, minor_per_major=100)
    # by 31 May: m1 lapsed on 04-10 (01-10 + 90 days), m3 bought 05-01
    assert f.active_members == 1
    assert f.new_members == 2  # m1, m3
    assert sum(p.lapsed for p in f.bucket.periods) == 1
    assert f.churn_rate == pytest.approx(1 / 3)  # active at month starts: Feb 1, Mar 1, Apr 1
    assert f.pareto.total_revenue_minor == 50_000
    assert f.points_outstanding == 0  # the points were earned later


def test_snapshot_figures_in_one_query(db: Database, world: World, clock: FixedClock,
                                       shop: Shop, session: Session) -> None:
    owner = _actor(db, world.owner)
    snap = dashboard.snapshot_figures(session, actor=owner, scope=_scope(owner, clock))
    assert snap is not None and snap.as_of == SNAPSHOT_DAY
    # scored (a P(alive)): m1-m4; at risk (P(alive) < 0.5): m3, m4 with CLV 4,000 + 6,000
    assert (snap.members_scored, snap.members_at_risk) == (4, 2)
    assert (snap.clv_total_minor, snap.clv_at_risk_minor) == (90_000, 10_000)
    assert snap.at_risk_share == pytest.approx(1 / 9)
    assert [(g.name, g.members) for g in snap.stages] == [("new", 3), ("growing", 1),
                                                          ("lapsed", 1)]
    assert [(g.name, g.members, g.revenue_365_minor) for g in snap.segments] == [
        ("champions", 1, 35_000), ("loyal", 1, 40_000), ("new", 1, 8_000),
        ("hibernating", 1, 40_000)]
    assert [(c.r_score, c.fm_score, c.segment) for c in snap.grid] == [
        (1, 2, "hibernating"), (4, 4, "loyal"), (5, 1, "new"), (5, 4, "champions")]
    store_b = dashboard.snapshot_figures(session, actor=owner,
                                         scope=_scope(owner, clock, shop.store_b))
    assert store_b is not None
    assert (store_b.members_at_risk, store_b.clv_at_risk_minor) == (2, 10_000)
    assert [g.name for g in store_b.stages] == ["new", "lapsed"]


def test_no_snapshot_means_no_snapshot_figures(db: Database, world: World, clock: FixedClock,
                                               session: Session) -> None:
    owner = _actor(db, world.owner)
    assert dashboard.snapshot_figures(session, actor=owner, scope=_scope(owner, clock)) is None


def test_a_manager_sees_only_their_stores_and_a_cashier_nothing(
        db: Database, world: World, clock: FixedClock, session: Session) -> None:
    manager = _actor(db, world.manager_a)
    scope = dashboard.resolve_scope(actor=manager, clock=clock, tz=TZ)
    assert scope.store_ids == frozenset({world.store_a.id})
    with pytest.raises(PermissionDenied):
        dashboard.resolve_scope(actor=manager, clock=clock, tz=TZ, store_id=world.store_b.id)
    wider = dashboard.Scope(period=scope.period, store_ids=None, tz=TZ)
    with pytest.raises(PermissionDenied):
        dashboard.snapshot_figures(session, actor=manager, scope=wider)
    with pytest.raises(PermissionDenied):
        dashboard.history_figures(db, clock=clock, actor=manager, scope=wider,
                                  points_per_major_redeemed=100, minor_per_major=100)
    with pytest.raises(PermissionDenied):
        dashboard.resolve_scope(actor=_actor(db, world.cashier_a), clock=clock, tz=TZ)


@pytest.mark.parametrize(("first", "last", "field"), [
    (date(2026, 11, 10), date(2026, 11, 1), "first_on"),
    (None, date(2026, 11, 23), "last_on"),  # today is not over
    (date(2023, 1, 1), date(2026, 11, 22), "first_on"),  # more than 36 months
])
def test_bad_periods_are_refused_naming_the_field(
        db: Database, world: World, clock: FixedClock, first: date | None, last: date,
        field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        dashboard.resolve_scope(actor=_actor(db, world.owner), clock=clock, tz=TZ,
                                first_on=first, last_on=last)
    assert caught.value.field == field


def test_default_period_is_the_twelve_months_to_yesterday(
        db: Database, world: World, clock: FixedClock) -> None:
    scope = dashboard.resolve_scope(actor=_actor(db, world.owner), clock=clock, tz=TZ)
    assert (scope.period.first_on, scope.period.last_on) == (date(2025, 12, 1),
                                                             date(2026, 11, 22))
    assert scope.store_ids is None


def test_campaign_uplift_of_the_period(db: Database, world: World, clock: FixedClock,
                                       shop: Shop, session: Session) -> None:
    owner = _actor(db, world.owner)
    # treatment m1, m2 (m1 bought on 09-05 in the window), control m3, m4 (no purchase)
    add_campaign(db, shop, launched=datetime(2026, 9, 1, 2, tzinfo=UTC),
                 treated=[shop.m1, shop.m2], control=[shop.m3, shop.m4])
    add_campaign(db, shop, launched=datetime(2026, 3, 1, 2, tzinfo=UTC), name="Spring",
                 treated=[shop.m1, shop.m2], control=[shop.m3, shop.m4])
    found = dashboard.campaign_uplift(session, clock=clock, actor=owner,
                                      scope=_scope(owner, clock), currency="CNY")
    assert [c.name for c in found] == ["Autumn win-back"]  # Spring is outside the period
    c = found[0]
    assert (c.treatment, c.control, c.launched_on) == (2, 2, date(2026, 9, 1))
    assert c.conversion is not None
    # m1 and m2 both bought in their 14 days (09-05, 09-02): 2/2 − 0/2 = 100 points
    assert c.conversion.estimate == pytest.approx(1.0)
    assert c.conversion.low < c.conversion.estimate <= c.conversion.high


def test_cache_computes_a_key_once(db: Database, world: World, clock: FixedClock,
                                   shop: Shop) -> None:
    owner = _actor(db, world.owner)
    cache: dashboard.FigureCache[dashboard.HistoryFigures] = dashboard.FigureCache(4)
    scope = _scope(owner, clock)
    assert dashboard.peek_history(db, clock=clock, actor=owner, scope=scope, cache=cache) is None
    first = dashboard.cached_history(db, clock=clock, actor=owner, scope=scope,
                                     points_per_major_redeemed=100, minor_per_major=100,
                                     currency="CNY", cache=cache)
    again = dashboard.cached_history(db, clock=clock, actor=owner, scope=scope,
                                     points_per_major_redeemed=100, minor_per_major=100,
                                     currency="CNY", cache=cache)
    assert again is first
    assert dashboard.peek_history(db, clock=clock, actor=owner, scope=scope,
                                  cache=cache) is first
    # the next day is another key
    tomorrow = FixedClock(clock.now() + timedelta(days=1))
    assert dashboard.peek_history(db, clock=tomorrow, actor=owner, scope=scope,
                                  cache=cache) is None
