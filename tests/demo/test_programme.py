"""The loyalty programme the demo chain lived through, checked in a real database.

One build of 2,000 members over two years (enough for every tier, paid periods, expired
points and a year of surveys) is made once for the module. The checks are the ones the
real code stands for: ``patron doctor``'s books, the nightly jobs finding nothing left to
do at the demo's "now", and the domains' rules giving back every amount the replay wrote.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Row, func, select

from patron.care import service as care
from patron.cli.doctor import CHECKS
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.events import OutboxEvent
from patron.demo import DemoConfig, DemoSummary, build_demo, summarize, wipe
from patron.feedback.models import CallbackTask, Complaint, ComplaintCompensation
from patron.jobs import daily
from patron.loyalty import rules as loyalty_rules
from patron.loyalty import service as loyalty
from patron.loyalty.enums import ExpiryPolicy
from patron.loyalty.models import (
    LoyaltyProgram,
    Membership,
    MemberTier,
    PointsEntry,
    PointsLot,
    Tier,
    TierChange,
)
from patron.offers.models import Coupon, CouponRedemption
from patron.sales.models import Sale, SaleDiscount, SalePayment
from patron.wallet import rules as wallet_rules
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from patron.wallet.models import WalletEntry

END_ON = date(2026, 11, 23)
MEDIUM = DemoConfig(end_on=END_ON, seed=11, members=2_000, years=2.0)
NOW = datetime.combine(END_ON, time(0, 15), tzinfo=ZoneInfo("Asia/Shanghai"))


@dataclass
class Built:
    db: Database
    summary: DemoSummary


@pytest.fixture(scope="module")
def built(database_url: str) -> Iterator[Built]:
    """The medium demo, built once; wiped at the end (it has its own engine, so the
    per-test table cleanup does not empty it between the read-only checks)."""
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    try:
        with database.write() as s:
            summary = build_demo(s, config=MEDIUM)
        yield Built(database, summary)
    finally:
        with database.write() as s:
            wipe(s)
        database.dispose()


def test_the_books_are_clean_as_patron_doctor_checks_them(built: Built) -> None:
    with built.db.read() as s:
        for name, check in CHECKS:
            assert check(s) == [], name


def test_the_nightly_jobs_find_nothing_left_to_do_at_the_demos_now(built: Built) -> None:
    """The replay released, announced and expired points, ended paid periods, reviewed
    tiers and expired coupons and rewards exactly as the jobs would have: running them
    again at the same night changes nothing."""
    with built.db.write() as s:
        counts = daily.run_all(s, FixedClock(NOW))
        s.rollback()
    assert counts == dict.fromkeys(counts, 0)


def test_the_next_night_has_ordinary_work(built: Built) -> None:
    with built.db.write() as s:
        counts = daily.run_all(s, FixedClock(NOW + timedelta(days=1)))
        s.rollback()
    assert counts["points.released"] > 0


def test_no_member_is_owed_an_upgrade(built: Built) -> None:
    """Tiers were re-evaluated after every sale: evaluating again upgrades nobody."""
    with built.db.write() as s:
        before = s.scalar(select(func.count()).select_from(TierChange))
        for member_id in s.scalars(select(MemberTier.member_id).limit(400)):
            loyalty.evaluate_tier(s, clock=FixedClock(NOW), member_id=member_id)
        after = s.scalar(select(func.count()).select_from(TierChange))
        s.rollback()
    assert after == before


def test_most_members_are_associates_or_members_and_a_few_are_gold(built: Built) -> None:
    tiers = dict(built.summary.tiers)
    total = sum(tiers.values())
    assert total == MEDIUM.members  # every member bought, so every member has a tier
    assert (tiers["注册会员"] + tiers["正式会员"]) / total >= 0.8
    assert 0.003 <= tiers["金卡会员"] / total <= 0.06
    assert tiers["银卡会员"] > tiers["金卡会员"] > 0


def test_every_member_has_a_tier_history_ending_in_their_tier(built: Built) -> None:
    with built.db.read() as s:
        tiers = s.execute(select(Tier.__table__)).all()
        current = {r.member_id: r for r in s.execute(select(MemberTier.__table__))}
        last: dict[Any, Row[Any]] = {}
        for change in s.execute(select(TierChange.__table__).order_by(TierChange.seq)):
            if change.member_id in last:
                assert change.from_tier_id == last[change.member_id].to_tier_id
            else:
                assert change.from_tier_id is None
            last[change.member_id] = change
    assert set(last) == set(current)
    codes = {t.id: t.code for t in tiers}
    for member_id, row in current.items():
        assert last[member_id].to_tier_id == row.tier_id
        assert row.source in ("earned", "paid")
        if row.source == "paid":
            assert codes[row.tier_id] == "silver"  # what the Plus plan grants


def test_paid_members_hold_running_periods_some_ending_soon(built: Built) -> None:
    summary = built.summary
    assert summary.paid_members >= 10
    assert 0 < summary.paid_expiring < summary.paid_members
    with built.db.read() as s:
        plus = s.scalars(select(Membership).where(Membership.status == "active")).all()
        for period in plus:
            assert period.ends_at - period.starts_at == timedelta(days=365)
            sale = s.get(Sale, period.sale_id)
            assert sale is not None and sale.member_id == period.member_id
        paid = s.scalars(select(MemberTier).where(MemberTier.source == "paid")).all()
        running = {p.member_id for p in plus if p.starts_at <= NOW < p.ends_at}
        assert paid and all(row.member_id in running for row in paid)


def test_points_lots_follow_the_programme_and_the_liability_is_positive(built: Built) -> None:
    assert built.summary.points_outstanding > 0
    with built.db.read() as s:
        program = s.get(LoyaltyProgram, 1)
        assert program is not None and program.expiry_policy == "months"
        lots = s.execute(select(PointsLot.__table__)).all()
        kinds = Counter(s.scalars(select(PointsEntry.kind)))
    assert kinds["expire"] > 0 and kinds["redeem"] > 0 and kinds["release"] > 0
    for lot in lots:
        assert lot.expires_at == loyalty_rules.expires_at(
            lot.earned_at, policy=ExpiryPolicy.MONTHS, months=12, tz="Asia/Shanghai")
        if lot.sale_id is not None:  # earned at a sale (an adjustment is available at once)
            assert lot.available_at == lot.earned_at + timedelta(days=7)
        assert lot.is_pending == (lot.available_at > NOW)  # released by the night after
        if lot.expires_at <= NOW:
            assert lot.remaining == 0  # spent or expired
    assert sum(lot.remaining for lot in lots) == built.summary.points_outstanding


def test_sales_carry_the_points_they_earned_and_redeemed(built: Built) -> None:
    with built.db.read() as s:
        earned = dict(s.execute(select(PointsLot.sale_id, PointsLot.points)
                                .where(PointsLot.sale_id.is_not(None))).all())
        redeemed = {sale_id: -delta for sale_id, delta in s.execute(
            select(PointsEntry.sale_id, PointsEntry.available_delta)
            .where(PointsEntry.kind == "redeem"))}
        paid_with_points = dict(s.execute(
            select(SalePayment.sale_id, SalePayment.amount_minor)
            .where(SalePayment.method == "points")).all())
        sales = s.execute(select(Sale.id, Sale.member_id, Sale.points_earned,
                                 Sale.points_redeemed, Sale.total_minor)).all()
    for sale in sales:
        if sale.member_id is None:
            assert sale.points_earned == sale.points_redeemed == 0
            continue
        assert sale.points_earned == earned.get(sale.id, 0)
        assert sale.points_redeemed == redeemed.get(sale.id, 0)
        assert paid_with_points.get(sale.id, 0) == sale.points_redeemed  # 1 point = 1 fen


def test_coupon_redemptions_are_the_sales_coupon_discounts(built: Built) -> None:
    assert built.summary.coupons_redeemed > 0
    with built.db.read() as s:
        redemptions = {(r.sale_id, r.discount_minor) for r in s.execute(
            select(CouponRedemption.sale_id, CouponRedemption.discount_minor))}
        discounts = {(d.sale_id, d.amount_minor) for d in s.execute(
            select(SaleDiscount.sale_id, SaleDiscount.amount_minor)
            .where(SaleDiscount.kind == "coupon"))}
        statuses = Counter(s.scalars(select(Coupon.status)))
        late = s.scalar(select(func.count()).select_from(Coupon).where(
            Coupon.status == "issued", Coupon.valid_until <= NOW))
    assert redemptions == discounts
    assert statuses["redeemed"] == built.summary.coupons_redeemed
    assert statuses["expired"] > 0 and statuses["issued"] > 0 and late == 0


def test_tier_discounts_are_the_tiers_percent_of_the_basket(built: Built) -> None:
    with built.db.read() as s:
        tiers = {t.id: t for t in s.execute(select(Tier.__table__))}
        rows = s.execute(select(Sale.tier_id, Sale.subtotal_minor, Sale.discount_minor,
                                SaleDiscount.amount_minor, SaleDiscount.reference)
                         .join(SaleDiscount, SaleDiscount.sale_id == Sale.id)
                         .where(SaleDiscount.kind == "tier")).all()
    assert rows
    for tier_id, subtotal, discount, amount, code in rows:
        tier = tiers[tier_id]
        assert code == tier.code and tier.discount_pct > 0
        before = subtotal - discount + amount  # the basket the tier discount was taken on
        assert abs(amount - before * tier.discount_pct / 100) <= 0.5


def test_stored_value_splits_principal_and_bonus_like_the_wallet_rules(built: Built) -> None:
    summary = built.summary
    assert 0.08 <= summary.wallets / MEDIUM.members <= 0.2
    assert summary.wallet_principal_minor > summary.wallet_bonus_minor > 0
    with built.db.read() as s:
        tiers = wallet.active_bonus_tiers(s)
        entries = s.execute(select(WalletEntry.__table__).order_by(WalletEntry.seq)).all()
    balances: dict[Any, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for e in entries:
        principal, bonus = balances[e.account_id]
        if e.kind == "topup":
            assert e.bonus_delta_minor == wallet_rules.bonus_for(
                e.principal_delta_minor, tiers, e.occurred_at)
        else:
            assert e.kind == "spend"
            amount = -(e.principal_delta_minor + e.bonus_delta_minor)
            assert (-e.principal_delta_minor, -e.bonus_delta_minor) == wallet_rules.split_spend(
                amount, principal, bonus, SpendOrder.PRINCIPAL_FIRST)
        principal += e.principal_delta_minor
        bonus += e.bonus_delta_minor
        assert (e.principal_after_minor, e.bonus_after_minor) == (principal, bonus)
        balances[e.account_id] = (principal, bonus)
    assert any(e.bonus_delta_minor > 0 for e in entries)


def test_care_rules_are_on_with_their_coupons_and_calls(built: Built) -> None:
    with built.db.read() as s:
        birthday = care.rule_config(s, "birthday")
        winback = care.rule_config(s, "winback")
        receipt = care.rule_config(s, "receipt")
        replenishment = care.rule_config(s, "replenishment")
        tasks = Counter((t.reason, t.status) for t in s.scalars(select(CallbackTask)))
    assert receipt["enabled"] and replenishment["enabled"]
    assert birthday["enabled"] and birthday["coupon_template_id"]
    assert winback["enabled"] and winback["coupon_template_id"] and winback["callback"]
    assert tasks[("win_back", "open")] + tasks[("win_back", "done")] > 0


def test_complaints_span_the_workflow_and_some_were_compensated(built: Built) -> None:
    with built.db.read() as s:
        statuses = Counter(s.scalars(select(Complaint.status)))
        compensated = s.scalar(select(func.count()).select_from(ComplaintCompensation))
    assert sum(statuses.values()) == built.summary.complaints >= 8
    assert statuses["closed"] > 0
    assert compensated is not None and compensated > 0
    with built.db.read() as s:
        adjusted = s.scalar(select(func.count()).select_from(PointsEntry)
                            .where(PointsEntry.kind == "adjust"))
    assert adjusted  # "my points never arrived", put right through loyalty.adjust


def test_surveys_give_a_believable_nps(built: Built) -> None:
    summary = built.summary
    assert summary.survey_responses >= 0.3 * summary.survey_invitations > 0
    assert summary.nps is not None and 10 <= summary.nps <= 50


def test_the_worker_has_nothing_to_react_to(built: Built) -> None:
    """History is not news: every event the build's services wrote is processed."""
    with built.db.read() as s:
        pending = s.scalars(select(OutboxEvent.type).where(
            OutboxEvent.processed_at.is_(None))).all()
    assert not any(t.startswith(("complaint.", "gift_card.", "package.", "coupon."))
                   for t in pending)


def test_summarize_reads_back_the_same_figures(built: Built) -> None:
    with built.db.read() as s:
        assert summarize(s) == built.summary
