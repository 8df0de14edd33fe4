"""Care rules on a small chain: who is greeted, reminded and invited back, on which local
day, and never twice for the same occasion."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.care import service as care
from patron.care.models import CareOccasion
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.feedback.models import CallbackTask
from patron.jobs.worker import WorkerContext
from patron.members.models import Member
from patron.messaging.models import Message
from patron.offers import service as offers
from patron.offers.enums import CouponKind, Validity
from patron.offers.models import Coupon
from patron.offers.schemas import CouponTemplateCreate
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product
from tests.support.worker import make_worker

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


@pytest.fixture
def ctx(db: Database, clock: FixedClock, settings: Settings, tmp_path: Path) -> WorkerContext:
    return make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms").ctx


def _messages(session: Session, rule: str) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.dedupe_key.like(f"care:{rule}:%"))
                                .order_by(Message.created_at)))


def test_birthdays_solar_and_lunar_on_the_stores_local_day(
        session: Session, ctx: WorkerContext, world: World) -> None:
    clock = FixedClock(datetime(2026, 9, 25, 1, 0, tzinfo=UTC))
    ctx.clock = clock
    lunar = make_member(session, clock, world.store_a, sms_consent=True,
                        birthday_calendar="lunar", birth_month=8, birth_day=15)
    solar = make_member(session, clock, world.store_a, sms_consent=True,
                        birthday_calendar="solar", birth_month=9, birth_day=25)
    make_member(session, clock, world.store_a, sms_consent=True,
                birthday_calendar="solar", birth_month=9, birth_day=26)
    other_store = make_member(session, clock, world.store_b, sms_consent=True,
                              birthday_calendar="solar", birth_month=9, birth_day=25)
    day = date(2026, 9, 25)  # Mid-Autumn: lunar 8-15 of 2026
    assert care.birthdays(session, ctx, world.store_a, day) == 2
    assert care.birthdays(session, ctx, world.store_a, day) == 0  # a re-run: nothing twice
    greeted = {m.member_id for m in _messages(session, "birthday")}
    assert greeted == {lunar.id, solar.id}
    assert other_store.id not in greeted
    occasions = {o.occasion for o in session.scalars(select(CareOccasion))}
    assert occasions == {"2026"}
    # next year lunar 8-15 is 2027-09-15: greeted then, under lunar year 2027
    assert care.birthdays(session, ctx, world.store_a, date(2027, 9, 15)) == 1


def test_birthday_coupon_is_issued_once(session: Session, ctx: WorkerContext,
                                        world: World) -> None:
    clock = FixedClock(datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    ctx.clock = clock
    owner = auth.principal_for_user(world.owner)
    template = offers.create_template(session, clock=clock, actor=owner,
                                      data=CouponTemplateCreate(
                                          name="Birthday 20 off", kind=CouponKind.FIXED,
                                          amount_minor=2000, validity=Validity.DAYS,
                                          valid_days=30))
    care.set_rule(session, clock=clock, actor=owner, code="birthday", enabled=True,
                  config={"coupon_template_id": str(template.id), "days_before": 3})
    member = make_member(session, clock, world.store_a, sms_consent=True,
                         birthday_calendar="solar", birth_month=3, birth_day=4)
    for _ in range(2):
        care.birthdays(session, ctx, world.store_a, date(2026, 3, 1))
    coupons = list(session.scalars(select(Coupon).where(Coupon.member_id == member.id)))
    assert len(coupons) == 1 and coupons[0].source == "birthday"
    [message] = _messages(session, "birthday")
    assert coupons[0].code in message.body or "Birthday 20 off" in message.body


def test_rule_settings_are_validated_and_name_the_field(session: Session, clock: FixedClock,
                                                        world: World) -> None:
    from patron.core.errors import NotFound, ValidationFailed

    owner = auth.principal_for_user(world.owner)
    for config, field in (({"days_before": -1}, "config.days_before"),
                          ({"channels": ["fax"]}, "config.channels"),
                          ({"colour": "red"}, "config.colour"),
                          ({"callback": "yes"}, "config.callback")):
        with pytest.raises(ValidationFailed) as refused:
            care.set_rule(session, clock=clock, actor=owner,
                          code="winback" if "callback" in config else "birthday",
                          enabled=True, config=config)
        assert refused.value.field == field
    with pytest.raises(NotFound):
        care.set_rule(session, clock=clock, actor=owner, code="nope", enabled=True, config={})
    cashier = auth.principal_for_user(world.cashier_a)
    from patron.core.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        care.set_rule(session, clock=clock, actor=cashier, code="birthday", enabled=False,
                      config={})


def _buy(db: Database, clock: FixedClock, world: World, member_id: object, sku: str,
         price: int, qty: int = 1) -> None:
    with db.write() as s:
        sales.checkout(s, clock=clock, actor=auth.principal_for_user(world.cashier_a), till=TILL,
                       data=SaleCreate(member_id=member_id, lines=[LineIn(sku=sku, quantity=qty)],
                                       payments=PaymentsIn(card_minor=price * qty)))


def _reminder_days(db: Database, ctx: WorkerContext, world: World, start: date,
                   days: int) -> dict[object, date]:
    first: dict[object, date] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        with db.write() as s:
            care.replenishment_reminders(s, ctx, world.store_a, day)
            for m in _messages(s, "replenishment"):
                first.setdefault(m.member_id, day)
    return first


def test_replenishment_follows_each_members_own_cycle(
        db: Database, clock: FixedClock, world: World, ctx: WorkerContext) -> None:
    start = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    clock._at = start  # the history begins in June
    with db.write() as s:
        make_product(s, sku="FORMULA", price_minor=25_800, category_code="BABY",
                     replenish_days=21)
        regular = make_member(s, clock, world.store_a, sms_consent=True).id
        newcomer = make_member(s, clock, world.store_a, sms_consent=True).id
    for n in range(5):  # formula every 20 days: days 0, 20, 40, 60, 80
        clock._at = start + timedelta(days=20 * n)
        _buy(db, clock, world, regular, "FORMULA", 25_800)
    last = (start + timedelta(days=80)).date()
    clock._at = start + timedelta(days=80, hours=1)
    _buy(db, clock, world, newcomer, "FORMULA", 25_800)  # one purchase: no history
    first = _reminder_days(db, ctx, world, last + timedelta(days=1), 25)
    # the regular buyer rebuys every 20 days: reminded 3 days before day 20 after the last
    assert first[regular] < last + timedelta(days=20)
    assert first[regular] == last + timedelta(days=17)
    # no history: the category's 21 days, 3 days before
    assert first[newcomer] == last + timedelta(days=18)
    with db.read() as s:
        assert len(_messages(s, "replenishment")) == 2  # once per cycle, not every day


def test_winback_invites_valuable_lapsed_members_and_asks_the_store_to_call(
        db: Database, clock: FixedClock, world: World, ctx: WorkerContext) -> None:
    start = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    clock._at = start
    with db.write() as s:
        make_product(s, sku="SUIT", price_minor=120_000)
        valuable = make_member(s, clock, world.store_a, sms_consent=True).id
        small = make_member(s, clock, world.store_a, sms_consent=True).id
        recent = make_member(s, clock, world.store_a, sms_consent=True).id
    _buy(db, clock, world, valuable, "SUIT", 120_000)
    _buy(db, clock, world, small, "SUIT", 120_000)
    with db.write() as s:  # the small spender returned the suit
        sale = s.scalar(select(sales.Sale).where(sales.Sale.member_id == small))
        assert sale is not None
        from patron.sales.schemas import RefundCreate

        sales.refund(s, clock=clock, actor=auth.principal_for_user(world.manager_a), till=TILL,
                     sale_id=sale.id, data=RefundCreate(reason="changed mind"))
    clock._at = start + timedelta(days=60)
    _buy(db, clock, world, recent, "SUIT", 120_000)
    today = (start + timedelta(days=100)).date()
    ctx.clock = FixedClock(start + timedelta(days=100))
    with db.write() as s:
        assert care.winback(s, ctx, world.store_a, today) == 1
        assert care.winback(s, ctx, world.store_a, today + timedelta(days=1)) == 0
        [message] = _messages(s, "winback")
        assert message.member_id == valuable and message.purpose == "marketing"
        tasks = list(s.scalars(select(CallbackTask)))
        assert [(t.member_id, t.reason, t.store_id) for t in tasks] == \
            [(valuable, "win_back", world.store_a.id)]


def test_receipt_rule_can_be_switched_off(db: Database, clock: FixedClock, world: World,
                                          ctx: WorkerContext) -> None:
    owner = auth.principal_for_user(world.owner)
    with db.write() as s:
        care.set_rule(s, clock=clock, actor=owner, code="receipt", enabled=False, config={})
        make_product(s, sku="TEA", price_minor=1000)
        member = make_member(s, clock, world.store_a, email="r@example.com").id
    _buy(db, clock, world, member, "TEA", 1000)
    from patron.jobs.handlers import handlers_for
    from patron.jobs.worker import process_outbox

    process_outbox(ctx, handlers_for)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0


def test_tier_upgrade_is_congratulated_and_points_expiry_warned(
        db: Database, clock: FixedClock, world: World, ctx: WorkerContext) -> None:
    from patron.jobs.handlers import handlers_for
    from patron.jobs.worker import process_outbox
    from patron.loyalty import service as loyalty

    owner = auth.principal_for_user(world.owner)
    with db.write() as s:
        loyalty.create_tier(s, clock=clock, actor=owner, code="silver", name="Silver", rank=1,
                            threshold=50_000, points_multiplier_pct=150)
        make_product(s, sku="BAG", price_minor=60_000)
        member = make_member(s, clock, world.store_a, sms_consent=True).id
    _buy(db, clock, world, member, "BAG", 60_000)
    process_outbox(ctx, handlers_for)
    with db.read() as s:
        [upgrade] = _messages(s, "tier_upgraded")
        assert upgrade.member_id == member and "Silver" in upgrade.body
        assert json.loads(json.dumps(upgrade.payload))["rule"] == "tier_upgraded"
        assert s.get(Member, member) is not None


# ---------------------------------------------------------------- the daily rules at scale
# (bench/care_jobs.py times them over a million members; these pin what they select)


@hypothesis_settings(max_examples=300, deadline=None)
@given(instants=st.lists(st.integers(min_value=int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()),
                                     max_value=int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())),
                         min_size=1, max_size=50),
       zone=st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York",
                             "Australia/Lord_Howe", "America/St_Johns", "UTC"]))
def test_local_days_are_the_stores_calendar_days_across_daylight_saving(
        instants: list[int], zone: str) -> None:
    tz = ZoneInfo(zone)
    # around each instant's day, including the hours either side of a clock change
    at_s = sorted({s + d for s in instants for d in (0, -3600, 3600, -1, 1)})
    at_us = np.array(at_s, dtype=np.int64) * 1_000_000 + 999_999
    expected = [datetime.fromtimestamp(s, UTC).astimezone(tz).date().toordinal() for s in at_s]
    assert care.local_days(at_us, tz).tolist() == expected


def _refund_last_sale(db: Database, world: World, member_id: object) -> None:
    from patron.sales.schemas import RefundCreate

    with db.write() as s:
        sale = s.scalars(select(sales.Sale).where(sales.Sale.member_id == member_id)
                         .order_by(sales.Sale.occurred_at.desc())).first()
        assert sale is not None
        sales.refund(s, clock=FixedClock(sale.occurred_at + timedelta(hours=1)),
                     actor=auth.principal_for_user(world.manager_a), till=TILL,
                     sale_id=sale.id, data=RefundCreate(reason="wrong stage"))


def test_replenishment_reads_only_the_history_window_and_what_was_kept(
        db: Database, clock: FixedClock, world: World, ctx: WorkerContext) -> None:
    start = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    clock._at = start
    with db.write() as s:
        make_product(s, sku="FORMULA", price_minor=25_800, category_code="BABY",
                     replenish_days=21)
        care.set_rule(s, clock=clock, actor=auth.principal_for_user(world.owner),
                      code="replenishment", enabled=True, config={"history_days": 60})
        windowed = make_member(s, clock, world.store_a, sms_consent=True).id
        returned = make_member(s, clock, world.store_a, sms_consent=True).id
    _buy(db, clock, world, windowed, "FORMULA", 25_800)  # day 0: out of the window later
    clock._at = start + timedelta(days=90)
    _buy(db, clock, world, returned, "FORMULA", 25_800)
    clock._at = start + timedelta(days=100)
    _buy(db, clock, world, windowed, "FORMULA", 25_800)
    _buy(db, clock, world, returned, "FORMULA", 25_800)
    _refund_last_sale(db, world, returned)  # brought back whole: not a purchase
    day_100 = clock._at.date()
    first = _reminder_days(db, ctx, world, day_100 + timedelta(days=1), 50)
    # day 0 is older than 60 days: one purchase, the category's 21 days, 3 days before
    # (with it, one 100-day interval would put the reminder at day 100 + 47 - 3)
    assert first[windowed] == day_100 + timedelta(days=18)
    # the returned purchase does not count: the last kept one is day 90
    assert first[returned] == day_100 - timedelta(days=10) + timedelta(days=18)


def test_replenishment_dates_purchases_on_the_stores_local_day(
        db: Database, clock: FixedClock, world: World) -> None:
    clock._at = datetime(2026, 6, 10, 16, 30, tzinfo=UTC)  # 00:30 on June 11 in Shanghai
    with db.write() as s:
        product = make_product(s, sku="FORMULA", price_minor=25_800, category_code="BABY",
                               replenish_days=21)
        member = make_member(s, clock, world.store_a, sms_consent=True).id
    _buy(db, clock, world, member, "FORMULA", 25_800)
    with db.read() as s:
        config = care.rule_config(s, "replenishment", world.store_a.id)
        assert not care.due_replenishments(s, world.store_a, date(2026, 6, 28), config)
        [due] = care.due_replenishments(s, world.store_a, date(2026, 6, 29), config)
    assert due.member_id == member
    assert due.occasion == f"{product.id.hex}:2026-06-11"
    assert due.parts["replenishment"].last_bought_on == date(2026, 6, 11)


def test_winback_spend_is_counted_in_the_year_before_each_members_last_visit(
        db: Database, clock: FixedClock, world: World, ctx: WorkerContext) -> None:
    start = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)
    clock._at = start
    with db.write() as s:
        make_product(s, sku="COAT", price_minor=60_000)
        inside, boundary, outside = (make_member(s, clock, world.store_a, sms_consent=True).id
                                     for _ in range(3))
    for member, day in ((outside, 0), (boundary, 5), (inside, 10)):
        clock._at = start + timedelta(days=day)
        _buy(db, clock, world, member, "COAT", 60_000)
    clock._at = start + timedelta(days=370)
    for member in (inside, boundary, outside):
        _buy(db, clock, world, member, "COAT", 60_000)
    today = (start + timedelta(days=470)).date()
    with db.read() as s:
        config = care.rule_config(s, "winback", world.store_a.id)
        due = care.due_winbacks(s, world.store_a, today, config)
    # 120,000 in the 365 days up to the last visit (exactly 365 days before counts);
    # the first coat of `outside` was bought 370 days before: 60,000 is not enough
    assert {d.member_id for d in due} == {inside, boundary}
    assert {d.occasion for d in due} == {(start + timedelta(days=370)).date().isoformat()}
    assert all(d.parts["winback"].days_away == 100 for d in due)


def test_serve_due_claims_each_occasion_once_and_skips_members_it_cannot_reach(
        session: Session, clock: FixedClock, ctx: WorkerContext, world: World) -> None:
    from patron.messaging.templates import ReplenishmentView

    reachable = make_member(session, clock, world.store_a, sms_consent=True)
    erased = make_member(session, clock, world.store_a, sms_consent=True)
    erased.phone = None  # no channel the rule may use: nothing is recorded
    session.flush()
    config = care.rule_config(session, "replenishment", world.store_a.id)
    parts = {"replenishment": ReplenishmentView(product="Formula",
                                                last_bought_on=date(2026, 11, 1))}
    due = [care.Due(reachable.id, "formula:2026-11-01", parts),
           care.Due(reachable.id, "beans:2026-11-01", parts),
           care.Due(erased.id, "formula:2026-11-01", parts)]

    def serve() -> list[care.Served]:
        return care.serve_due(session, ctx, rule="replenishment", template="replenishment",
                              store=world.store_a, config=config, due=due)

    served = serve()
    assert [(s.due.member_id, s.due.occasion) for s in served] == \
        [(reachable.id, "formula:2026-11-01"), (reachable.id, "beans:2026-11-01")]
    messages = {m.id: m for m in _messages(session, "replenishment")}
    assert {s.message_id for s in served} == set(messages)
    occasions = list(session.scalars(select(CareOccasion)))
    assert {(o.member_id, o.message_id) for o in occasions} == \
        {(reachable.id, s.message_id) for s in served}
    assert all(messages[s.message_id].recipient == reachable.phone for s in served
               if s.message_id is not None)
    assert serve() == []  # a re-run: already served


def test_feb_29_birthdays_are_greeted_on_feb_28_in_common_years(
        session: Session, ctx: WorkerContext, world: World) -> None:
    ctx.clock = FixedClock(datetime(2027, 2, 28, 1, 0, tzinfo=UTC))
    leapling, feb_28 = (make_member(session, ctx.clock, world.store_a, sms_consent=True,
                                    birthday_calendar="solar", birth_month=2, birth_day=day)
                        for day in (29, 28))
    assert care.birthdays(session, ctx, world.store_a, date(2027, 2, 28)) == 2
    assert {m.member_id for m in _messages(session, "birthday")} == {leapling.id, feb_28.id}
    ctx.clock = FixedClock(datetime(2028, 2, 28, 1, 0, tzinfo=UTC))
    assert care.birthdays(session, ctx, world.store_a, date(2028, 2, 28)) == 1  # leap year


def test_sales_reads_shift_and_count_instants_to_the_microsecond(
        db: Database, clock: FixedClock, world: World) -> None:
    from sqlalchemy import literal

    from patron.sales.queries import days_before, epoch_us

    at = datetime(2026, 3, 1, 2, 3, 4, 567_890, tzinfo=UTC)
    clock._at = at
    with db.write() as s:
        make_product(s, sku="TEA", price_minor=1000)
        member = make_member(s, clock, world.store_a).id
    _buy(db, clock, world, member, "TEA", 1000)
    year_before = at - timedelta(days=365)
    with db.read() as s:
        occurred = select(sales.Sale.occurred_at).where(sales.Sale.member_id == member)
        column = occurred.scalar_subquery()
        assert s.scalar(select(epoch_us(column))) == \
            (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        for instant, earlier in ((year_before, False), (year_before - timedelta(microseconds=1),
                                                        True)):
            shifted = days_before(column, 365)
            assert s.scalar(select(literal(instant, type_=shifted.type) < shifted)) is earlier


def test_a_manager_sets_rules_for_their_own_stores_only(session: Session, clock: FixedClock,
                                                        world: World) -> None:
    from patron.core.errors import PermissionDenied

    manager = auth.principal_for_user(world.manager_a)
    care.set_rule(session, clock=clock, actor=manager, code="birthday", enabled=False,
                  config={}, store_id=world.store_a.id)
    with pytest.raises(PermissionDenied):
        care.set_rule(session, clock=clock, actor=manager, code="birthday", enabled=False,
                      config={}, store_id=world.store_b.id)
    with pytest.raises(PermissionDenied):  # brand-wide settings are the owner's
        care.set_rule(session, clock=clock, actor=manager, code="birthday", enabled=False,
                      config={})
    assert care.rule_config(session, "birthday", world.store_b.id)["enabled"] is True
