"""Team performance: every figure of a small hand-built chain equals the hand-computed value
(tests/analytics/team_chain.py works each one out), local days in each store's zone, and
store scoping (a manager sees their own stores only)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.analytics import source, team, views
from patron.analytics.team import StoreRow, TeamReport
from patron.analytics.views import Period
from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PermissionDenied, ValidationFailed
from patron.members.models import Member
from patron.sales.models import Sale
from tests.analytics.team_chain import (
    EXPECTED,
    PERIOD,
    REVENUE_UPLIFT_A,
    UPLIFT_A,
    Chain,
    build_chain,
    utc,
)


@pytest.fixture
def chain(session: Session, clock: FixedClock) -> Chain:
    return build_chain(session, clock)


def report_for(session: Session, clock: FixedClock, chain: Chain, who: str = "owner",
               **kwargs: object) -> TeamReport:
    principal = auth.principal_for_user(getattr(chain, who))
    return team.team_performance(session, principal=principal, clock=clock,
                                 period=kwargs.pop("period", PERIOD), **kwargs)  # type: ignore[arg-type]


def check_row(row: StoreRow, expected: dict[str, object]) -> None:
    for name, value in expected.items():
        assert getattr(row, name) == pytest.approx(value), name


def test_every_store_figure_matches_the_hand_computed_value(
        session: Session, clock: FixedClock, chain: Chain) -> None:
    report = report_for(session, clock, chain)
    rows = {r.code: r for r in report.stores}
    assert list(rows) == ["A", "B", "C"]
    for code in ("A", "B", "C"):
        check_row(rows[code], EXPECTED[code])
    check_row(report.total, EXPECTED["total"])

    a, b, c, total = rows["A"], rows["B"], rows["C"], report.total
    assert a.came_back_rate == pytest.approx(4 / 7)
    assert a.repeat_rate == pytest.approx(1 / 4)
    assert a.churn_rate == pytest.approx(2 / 3)
    assert b.churn_rate == 0.0
    assert c.churn_rate is None  # nobody was active at the start
    assert a.reach_rate == pytest.approx(2 / 3)
    assert a.callback_outcomes == {"reached": 1, "no_answer": 0, "complaint": 0,
                                   "will_return": 1, "wrong_number": 1, "not_interested": 0}
    assert b.callback_outcomes["not_interested"] == 1
    assert a.sla_rate == 0.5
    assert c.sla_rate is None

    assert a.surveys.responses == 3
    assert a.surveys.csat_percent == pytest.approx(200 / 3)
    assert a.surveys.csat_mean == pytest.approx(4.0)
    assert a.surveys.nps == pytest.approx(0.0)
    assert (b.surveys.csat_percent, b.surveys.nps) == (0.0, 100.0)
    assert c.surveys.responses == 0 and c.surveys.nps is None
    assert total.surveys.responses == 5
    assert total.surveys.csat_percent == pytest.approx(50.0)
    assert total.surveys.nps == pytest.approx(25.0)

    assert a.campaign.campaigns == 2
    assert (a.campaign.treatment_members, a.campaign.treatment_converted) == (4, 2)
    assert (a.campaign.control_members, a.campaign.control_converted) == (4, 0)
    assert a.campaign.conversion_uplift == pytest.approx(UPLIFT_A)
    assert a.campaign.revenue_uplift_per_member_minor == REVENUE_UPLIFT_A == 2542
    # B's only campaign member in the period has no control in B: no estimate
    assert b.campaign.campaigns == 0 and b.campaign.conversion_uplift is None
    assert total.campaign.conversion_uplift == pytest.approx(UPLIFT_A)


def test_staff_figures_credit_who_did_the_work(session: Session, clock: FixedClock,
                                               chain: Chain) -> None:
    report = report_for(session, clock, chain)
    staff = {r.name: r for r in report.staff}
    assert set(staff) == {"Amy Cashier", "Alan Cashier", "Bea Cashier", "Cal Cashier",
                          "Mia Manager", "Ben Manager", "Olivia Owner"}
    amy, alan = staff["Amy Cashier"], staff["Alan Cashier"]
    assert (amy.enrolled, amy.came_back, amy.window_open) == (4, 2, 1)
    assert (alan.enrolled, alan.came_back, alan.window_open) == (2, 1, 0)
    assert (staff["Bea Cashier"].enrolled, staff["Bea Cashier"].came_back) == (2, 1)
    assert (staff["Cal Cashier"].enrolled, staff["Cal Cashier"].came_back) == (2, 1)
    # the settling call counts, not the first attempt
    assert (amy.callbacks_done, amy.callbacks_reached) == (1, 1)
    assert (alan.callbacks_done, alan.callbacks_reached, alan.reach_rate) == (1, 0, 0.0)
    mia = staff["Mia Manager"]
    assert (mia.callbacks_done, mia.callbacks_reached) == (1, 1)
    # a reopened complaint counts for whoever resolved it last
    assert (mia.complaints_resolved, mia.resolved_within_sla, mia.mean_resolution_hours) \
        == (1, 1, pytest.approx(6.0))
    owner = staff["Olivia Owner"]
    assert (owner.complaints_resolved, owner.resolved_within_sla) == (1, 0)
    assert owner.mean_resolution_hours == pytest.approx(72.0)
    assert staff["Ben Manager"].mean_resolution_hours == pytest.approx(144.0)
    # surveys: a sale's to its cashier, a complaint's to its resolver
    assert (amy.surveys.csat_percent, amy.surveys.nps) == (100.0, 100.0)
    assert (alan.surveys.csat_percent, alan.surveys.nps) == (0.0, -100.0)
    assert (mia.surveys.csat_percent, mia.surveys.nps) == (100.0, 0.0)
    bea = staff["Bea Cashier"]
    assert (bea.surveys.responses, bea.surveys.csat_percent, bea.surveys.nps) == (1, 0.0, None)


def test_monthly_trend_matches_the_hand_computed_months(session: Session, clock: FixedClock,
                                                        chain: Chain) -> None:
    july, august = report_for(session, clock, chain).trend
    assert (july.month, july.first_on, july.last_on) == ("2026-07", date(2026, 7, 1),
                                                         date(2026, 7, 31))
    assert (july.enrolled, july.came_back) == (6, 4)
    assert (august.enrolled, august.came_back) == (5, 2)
    assert july.repeat_rate == pytest.approx(1 / 6)
    assert august.repeat_rate == 0.0
    assert july.churn_rate == pytest.approx(1 / 4)
    assert august.churn_rate == pytest.approx(1 / 9)
    assert (july.callbacks_done, july.reach_rate) == (1, 1.0)
    assert (august.callbacks_done, august.reach_rate) == (3, pytest.approx(2 / 3))
    assert (july.complaints_resolved, july.sla_rate) == (3, pytest.approx(1 / 3))
    assert (august.complaints_resolved, august.sla_rate) == (0, None)
    assert july.mean_resolution_hours == pytest.approx(74.0)
    assert (july.csat_percent, july.nps) == (pytest.approx(200 / 3), 0.0)
    assert (august.csat_percent, august.nps) == (0.0, 100.0)
    assert july.campaign_conversion_uplift == pytest.approx(1 / 3)
    assert august.campaign_conversion_uplift == pytest.approx(1.0)


def test_a_partial_month_is_clipped_to_the_period(session: Session, clock: FixedClock,
                                                  chain: Chain) -> None:
    period = Period(date(2026, 7, 15), date(2026, 8, 10))
    report = report_for(session, clock, chain, period=period)
    assert [(m.first_on, m.last_on) for m in report.trend] == [
        (date(2026, 7, 15), date(2026, 7, 31)), (date(2026, 8, 1), date(2026, 8, 10))]
    # enrolled 07-15..08-10: m2 (07-20), b1 (07-15), c1 (07-31), m3 (08-01), b2 (08-10)
    assert report.total.enrolled == 5
    assert sum(m.enrolled for m in report.trend) == 5


def test_a_manager_sees_only_their_own_stores(session: Session, clock: FixedClock,
                                              chain: Chain) -> None:
    report = report_for(session, clock, chain, who="manager_a")
    assert [r.code for r in report.stores] == ["A"]
    assert report.store_ids == (chain.a.id,)
    check_row(report.total, EXPECTED["A"])
    names = {r.name for r in report.staff}
    assert "Bea Cashier" not in names and "Ben Manager" not in names
    # the owner resolved a complaint in store A: credited there, and only that one
    owner = next(r for r in report.staff if r.name == "Olivia Owner")
    assert owner.complaints_resolved == 1
    with pytest.raises(PermissionDenied):
        report_for(session, clock, chain, who="manager_a", store_ids=[chain.b.id])
    with pytest.raises(PermissionDenied):
        report_for(session, clock, chain, who="manager_a", store_ids=[chain.a.id, chain.b.id])


def test_an_owner_may_narrow_to_stores(session: Session, clock: FixedClock,
                                       chain: Chain) -> None:
    report = report_for(session, clock, chain, store_ids=[chain.c.id, chain.b.id])
    assert [r.code for r in report.stores] == ["C", "B"]
    assert report.total.enrolled == 4


def test_cashiers_are_refused(session: Session, clock: FixedClock, chain: Chain) -> None:
    with pytest.raises(PermissionDenied):
        report_for(session, clock, chain, who="cashier_a")


def test_bad_periods_and_stores_are_refused_naming_the_field(
        session: Session, clock: FixedClock, chain: Chain) -> None:
    with pytest.raises(ValidationFailed) as future:
        report_for(session, clock, chain, period=Period(date(2026, 11, 1), date(2026, 11, 30)))
    assert future.value.field == "to"
    with pytest.raises(ValidationFailed) as long:
        report_for(session, clock, chain, period=Period(date(2022, 1, 1), date(2026, 11, 1)))
    assert long.value.field == "from"
    with pytest.raises(ValidationFailed) as unknown:
        report_for(session, clock, chain, store_ids=[uuid.uuid4()])
    assert unknown.value.field == "store_id"


def test_local_day_in_sql_matches_zoneinfo_across_dst(session: Session, clock: FixedClock,
                                                      chain: Chain) -> None:
    """The SQL local day equals Python's on both backends, around New York's DST changes."""
    start = utc("2026-03-07T00:00:00")
    instants = [start + timedelta(minutes=97 * i) for i in range(0, 240 * 15, 7)]
    instants += [utc("2026-11-01T05:59:59"), utc("2026-11-01T06:00:00"),
                 utc("2026-03-08T06:59:59"), utc("2026-03-08T07:00:00")]
    member = session.scalar(select(Member).where(Member.id == chain.members["c3"].id))
    assert member is not None
    for n, at in enumerate(instants):
        session.add(Sale(store_id=chain.c.id, member_id=member.id, receipt_no=f"DST{n}",
                         occurred_at=at, recorded_at=at, subtotal_minor=1, total_minor=1))
    session.flush()
    for tz in ("America/New_York", "Asia/Shanghai", "UTC"):
        zone = team._Zone(tz=tz, store_ids=(chain.c.id,),
                          period=Period(date(2026, 3, 1), date(2026, 11, 22)),
                          today=date(2026, 11, 23))
        got = dict(session.execute(select(Sale.occurred_at, zone.local_day(Sale.occurred_at))
                                   .where(Sale.receipt_no.like("DST%"))).all())
        for at in instants:
            local = at.astimezone(ZoneInfo(tz)).date()
            assert got[at] == (local - date(1970, 1, 1)).days, (tz, at)
    assert datetime(2026, 3, 7, tzinfo=UTC) == start


def test_repeat_rate_and_churn_agree_with_the_reports_views(
        session: Session, clock: FixedClock, chain: Chain, db: Database) -> None:
    """The SQL here and the Ibis views behind /reports/repeat-rate and /reports/churn give
    the same figures, store by store, month by month."""
    session.commit()
    report = report_for(session, clock, chain)
    with source.open_source(db, as_of=PERIOD.last_on, timezone="Asia/Shanghai",
                            tables=["sales", "members"]) as src:
        for store in (chain.a, chain.b, chain.c):
            mine = report_for(session, clock, chain, store_ids=[store.id])
            for month in mine.trend:
                window = Period(month.first_on, month.last_on)
                theirs = views.repeat_rate(src.sales, src.members, period=window,
                                           tz=store.timezone, store_ids=[store.id])
                (churn,) = views.churn(src.sales, src.members, period=window,
                                       tz=store.timezone, store_ids=[store.id])
                assert month.repeat_rate == theirs.rate, (store.code, month.month)
                assert month.churn_rate == churn.churn_rate, (store.code, month.month)
            row = next(r for r in report.stores if r.store_id == store.id)
            whole = views.repeat_rate(src.sales, src.members, period=PERIOD,
                                      tz=store.timezone, store_ids=[store.id])
            assert (row.home_purchasers, row.home_repeaters) == (whole.purchasers,
                                                                 whole.repeaters)
