"""Build the demo chain in one unit of work: stores, staff, catalogue, members, purchases,
and the loyalty programme they lived through.

Stores and staff go through the services (``members.service.create_store``,
``auth.service.create_user``), so they are audited and hashed like real ones. Members and
sales are generated in memory from the seed and bulk-inserted (``bulk``): tens of thousands
of enrolments through the service would take minutes, and historical members need
historical timestamps the service (which uses the clock's "now") cannot give. The rows are
what the service would have written: same normalisation and validation, consent events as
evidence for every granted consent, UUIDv7 ids from the join time. ``member.joined`` outbox
events are not written: nothing should react to history as if it were new.

The loyalty programme (``programme``) is configured through the services at the dates the
brand introduced each part; its two years of use -- tiers, points lots and entries, stored
value, coupons, paid periods, stamp cards -- are replayed over the simulated sales
(``loyalty``) and bulk-inserted with them, the sales gaining their coupon and tier
discounts, points and payments. The few complaints, callback tasks, gift cards and visit
packages go through the services with the clock set to when they happened (``feedback``,
``prepaid``). Outbox events those calls write are marked processed: they are history, and
nothing should react to them as if they were new.

Everything random comes from ``numpy.random.SeedSequence(seed)``: one independent stream
per stage, so the same seed gives the same members, phones, purchases and programme
figures, and a change to one stage does not reshuffle the others. (Rows made by the
services -- complaints, gift cards -- get fresh random ids and codes, the same figures.)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.cards.models import GiftCard, MemberPackage, StampCard
from patron.catalog.models import Category, Product
from patron.core import collector
from patron.core.clock import FixedClock, as_utc
from patron.core.events import OutboxEvent
from patron.core.registry import Base
from patron.demo import bulk, feedback, prepaid
from patron.demo import loyalty as replay
from patron.demo.catalogue import CATEGORY_INDEX, ProductRef, create_catalogue
from patron.demo.ids import IdSource, unix_ms, uuid7_batch
from patron.demo.members import (
    MemberDraft,
    StoreRef,
    add_shopping_profiles,
    generate_members,
)
from patron.demo.programme import Programme, Staff, Timeline, set_up
from patron.demo.purchases import (
    DISCOUNT_COLUMNS,
    LINE_COLUMNS,
    PAYMENT_COLUMNS,
    SALE_COLUMNS,
    SaleDraft,
    Schedule,
    assemble,
    schedule,
    simulate_member_sales,
    simulate_walk_ins,
)
from patron.demo.seasons import Seasons, build_seasons
from patron.feedback import rules as feedback_rules
from patron.feedback.models import CallbackTask, Complaint, SurveyInvitation, SurveyResponse
from patron.loyalty import rules as loyalty_rules
from patron.loyalty.models import LoyaltyProgram, Membership, MemberTier, PointsAccount, Tier
from patron.members import rules
from patron.members import service as members_service
from patron.members.models import ConsentEvent, Member, Store
from patron.members.schemas import StoreCreate
from patron.offers import service as offers
from patron.offers.models import Coupon, CouponRedemption
from patron.sales.models import Sale, SaleLine
from patron.wallet.enums import SpendOrder
from patron.wallet.models import WalletAccount

DEMO_PASSWORD = "patron-demo"  # noqa: S105 - the published demo login
TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class StoreSpec:
    code: str
    name: str
    address: str
    phone: str
    share: float  # of members calling it home and of walk-in traffic
    opens_at: float  # fraction of the window after which the store opens


@dataclass(frozen=True)
class Login:
    username: str
    role: Role
    store_code: str | None
    display_name: str


STORES = (
    StoreSpec("SH01", "上海徐汇店", "上海市徐汇区漕溪北路 88 号 1 层", "021-6468 0001",
              0.42, 0.0),
    StoreSpec("SH02", "上海浦东店", "上海市浦东新区张杨路 500 号 B1 层", "021-5836 0002",
              0.36, 0.0),
    StoreSpec("HZ01", "杭州西湖店", "杭州市西湖区文三路 199 号", "0571-8796 0003",
              0.22, 0.35),
)
LOGINS = (
    Login("owner", Role.OWNER, None, "陈立"),
    Login("manager-sh01", Role.MANAGER, "SH01", "王芳"),
    Login("cashier-sh01", Role.CASHIER, "SH01", "李娜"),
    Login("manager-sh02", Role.MANAGER, "SH02", "张伟"),
    Login("cashier-sh02", Role.CASHIER, "SH02", "刘洋"),
    Login("manager-hz01", Role.MANAGER, "HZ01", "赵敏"),
    Login("cashier-hz01", Role.CASHIER, "HZ01", "周杰"),
)


@dataclass(frozen=True)
class DemoConfig:
    """What to generate. ``end_on`` is exclusive: history stops at the start of that day."""

    end_on: date
    seed: int = 42
    members: int = 20_000
    years: float = 2.0
    walk_in_share: float = 0.25  # of all sales
    with_sales: bool = True  # False: chain and members only (the lookup benchmark)
    # how stored value pays (the deployment's ``wallet_spend_order`` setting)
    spend_order: SpendOrder = SpendOrder.PRINCIPAL_FIRST

    @property
    def days(self) -> int:
        return max(1, round(365.25 * self.years))

    @property
    def start_on(self) -> date:
        return self.end_on - timedelta(days=self.days)


class Progress(Protocol):
    """Where long stages report: the CLI shows a Rich bar per stage, tests show nothing."""

    def stage(self, description: str, total: int) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


class NoProgress:
    def stage(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


@dataclass(frozen=True)
class DemoSummary:
    """Counts read back from the database after a build (or of what is already there)."""

    stores: int
    staff: int
    categories: int
    products: int
    members: int
    birthdays: int
    lunar_birthdays: int
    leap_month_birthdays: int
    sms_consents: int
    email_consents: int
    consent_events: int
    member_sales: int
    walk_in_sales: int
    sale_lines: int
    revenue_minor: int
    first_sale_at: datetime | None
    last_sale_at: datetime | None
    # the loyalty programme
    tiers: tuple[tuple[str, int], ...] = ()  # (tier name, members) by rank
    paid_members: int = 0  # members with a running paid period
    paid_expiring: int = 0  # ... of which it ends within 30 days
    points_outstanding: int = 0  # available + pending: the points liability
    points_pending: int = 0
    points_value_minor: int = 0  # what the outstanding points are worth at the till
    wallets: int = 0
    wallet_principal_minor: int = 0
    wallet_bonus_minor: int = 0
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    stamp_cards: int = 0
    gift_card_balance_minor: int = 0
    packages: int = 0
    complaints: int = 0
    complaints_open: int = 0  # open or in progress
    callbacks_open: int = 0
    survey_invitations: int = 0
    survey_responses: int = 0
    nps: float | None = None


def _streams(seed: int, count: int) -> list[tuple[np.random.Generator, random.Random]]:
    """Independent (numpy, stdlib) generator pairs, one per stage, all from ``seed``."""
    pairs = []
    for child in np.random.SeedSequence(seed).spawn(count):
        state = child.generate_state(2, dtype=np.uint64).tolist()
        pairs.append((np.random.Generator(np.random.PCG64(child)),
                      random.Random(state[0] << 64 | state[1])))
    return pairs


def _opening(on: date, tz: ZoneInfo) -> FixedClock:
    return FixedClock(datetime.combine(on, time(9, 0), tzinfo=tz))


def _create_chain(session: Session, config: DemoConfig) -> tuple[list[StoreRef], Staff]:
    """Stores and their staff, through the services, dated when each store opened."""
    tz = ZoneInfo(TIMEZONE)
    chain_opened = config.start_on - timedelta(days=30)
    stores: dict[str, tuple[Store, int]] = {}
    for spec in STORES:
        open_day = int(spec.opens_at * config.days)
        opened_on = chain_opened if open_day == 0 else config.start_on + timedelta(days=open_day)
        store = members_service.create_store(
            session, clock=_opening(opened_on - timedelta(days=1), tz), actor=None,
            data=StoreCreate(code=spec.code, name=spec.name, address=spec.address,
                             timezone=TIMEZONE, phone=spec.phone))
        stores[spec.code] = (store, open_day)
    staff: dict[str, list[User]] = {spec.code: [] for spec in STORES}
    owner: User | None = None
    for login in LOGINS:
        store_ids = []
        opened_on = chain_opened - timedelta(days=1)
        if login.store_code is not None:
            store, open_day = stores[login.store_code]
            store_ids = [store.id]
            opened_on = store.created_at.astimezone(tz).date()
        user = auth.create_user(
            session, clock=_opening(opened_on, tz), actor=None, username=login.username,
            display_name=login.display_name, password=DEMO_PASSWORD, role=login.role,
            store_ids=store_ids, language=None if login.role is Role.OWNER else "zh_CN")
        if login.store_code is not None:
            staff[login.store_code].append(user)
        else:
            owner = user
    assert owner is not None
    refs = []
    for index, spec in enumerate(STORES):
        store, open_day = stores[spec.code]
        people = sorted(staff[spec.code], key=lambda u: u.role != Role.MANAGER.value)
        refs.append(StoreRef(index=index, id=store.id, code=spec.code, tz=tz, share=spec.share,
                             open_day=open_day, staff_ids=tuple(u.id for u in people)))
    users = [owner, *(u for people in staff.values() for u in people)]
    principals = {u.id: auth.principal_for_user(u) for u in users}
    by_role = {role: {s.id: principals[u.id] for s in refs for u in staff[s.code]
                      if u.role == role.value} for role in (Role.MANAGER, Role.CASHIER)}
    return refs, Staff(owner=principals[owner.id], managers=by_role[Role.MANAGER],
                       cashiers=by_role[Role.CASHIER], labels={u.id: u.username for u in users})


BULK_TABLES = ("members", "member_tags", "member_anniversaries", "consent_events", "sales",
               "sale_lines", "sale_discounts")
MEMBER_COLUMNS = (
    "id", "card_no", "phone", "phone_last4", "name", "email", "gender", "birthday_calendar",
    "birth_year", "birth_month", "birth_day", "birth_leap_month", "preferences",
    "referral_source", "referred_by_id", "home_store_id", "enrolled_store_id", "enrolled_by_id",
    "sms_consent", "email_consent", "status", "joined_at", "updated_at",
)


def member_row(m: MemberDraft, drafts: list[MemberDraft],
               stores: list[StoreRef]) -> tuple[object, ...]:
    """The ``members`` row ``enroll_member`` would have written for this draft."""
    calendar_name, year, month, day, leap = m.birthday or (None, None, None, None, False)
    return (
        m.id, m.card_no, m.phone, rules.last4(m.phone), m.name, m.email, m.gender,
        calendar_name, year, month, day, leap, m.preferences, m.referral_source,
        drafts[m.referred_by].id if m.referred_by is not None else None,
        stores[m.home_store].id, stores[m.enrolled_store].id, m.enrolled_by,
        m.sms_consent, m.email_consent, "active", m.joined_at, m.joined_at,
    )


@dataclass(frozen=True)
class _MemberIds:
    """Ids of the members' anniversary and consent rows, drawn before the sales' ids."""

    anniversaries: list[uuid.UUID]
    consents: list[uuid.UUID]


def _member_ids(drafts: list[MemberDraft], rng: np.random.Generator) -> _MemberIds:
    anniversaries = [m for m in drafts for _ in m.anniversaries]
    consents = [m for m in drafts for granted in (m.sms_consent, m.email_consent) if granted]
    return _MemberIds(uuid7_batch(rng, [unix_ms(m.joined_at) for m in anniversaries]),
                      uuid7_batch(rng, [unix_ms(m.joined_at) for m in consents]))


def _write_members(session: Session, drafts: list[MemberDraft], stores: list[StoreRef],
                   ids: _MemberIds, progress: Progress) -> None:
    tables = {name: Base.metadata.tables[name] for name in
              ("members", "member_tags", "member_anniversaries", "consent_events")}
    tags = [(m.id, tag) for m in drafts for tag in m.tags]
    anniversaries = [(m, a) for m in drafts for a in m.anniversaries]
    anniversary_ids = ids.anniversaries
    consents = [(m, channel) for m in drafts
                for channel, granted in (("sms", m.sms_consent), ("email", m.email_consent))
                if granted]
    consent_ids = ids.consents

    progress.stage("Writing members", len(drafts) + len(tags) + len(anniversaries)
                   + len(consents))
    bulk.insert_rows(session, tables["members"], MEMBER_COLUMNS,
                     (member_row(m, drafts, stores) for m in drafts), on_chunk=progress.advance)
    bulk.insert_rows(session, tables["member_tags"], ("member_id", "tag"), tags,
                     on_chunk=progress.advance)
    bulk.insert_rows(session, tables["member_anniversaries"],
                     ("id", "member_id", "kind", "label", "on"),
                     ((i, m.id, kind, label, on) for i, (m, (kind, label, on))
                      in zip(anniversary_ids, anniversaries, strict=True)),
                     on_chunk=progress.advance)
    bulk.insert_rows(session, tables["consent_events"],
                     ("id", "member_id", "channel", "granted", "source", "at", "by_user_id",
                      "store_id", "note"),
                     ((i, m.id, channel, True, "enrolment", m.joined_at, m.enrolled_by,
                       stores[m.enrolled_store].id, "")
                      for i, (m, channel) in zip(consent_ids, consents, strict=True)),
                     on_chunk=progress.advance)


def _tag_vips(drafts: list[MemberDraft], sales: list[SaleDraft]) -> None:
    """Staff mark their best customers: the top 5 % by spend get ``VIP``."""
    spend = np.zeros(len(drafts), dtype=np.int64)
    for sale in sales:
        if sale.member >= 0:
            spend[sale.member] += sale.total_minor
    top = max(1, len(drafts) // 20)
    for index in np.argsort(-spend, kind="stable")[:top].tolist():
        drafts[index].tags = sorted({*drafts[index].tags, "VIP"})


def build_demo(session: Session, *, config: DemoConfig,
               progress: Progress | None = None) -> DemoSummary:
    """Generate the whole demo chain into an empty, migrated database (caller commits)."""
    # A build allocates millions of small, long-lived objects; the cyclic collector would
    # rescan them again and again (a third of the run time) while finding nothing to free.
    with collector.paused(), bulk.large_page_cache(session):
        _build(session, config, progress or NoProgress())
    return summarize(session)


def _build(session: Session, config: DemoConfig, progress: Progress) -> None:
    streams = _streams(config.seed, 9)
    seasons = build_seasons(config.start_on, config.days)

    progress.stage("Stores, staff and catalogue", 3)
    stores, staff = _create_chain(session, config)
    progress.advance(2)
    catalogue_rng, _ = streams[0]
    products = create_catalogue(
        session, rng=catalogue_rng,
        created_at=datetime.combine(config.start_on - timedelta(days=30), time(9),
                                    tzinfo=ZoneInfo(TIMEZONE)))
    session.flush()
    progress.advance()

    progress.stage("Drawing members", config.members)
    member_rng, member_rnd = streams[1]
    drafts = generate_members(n=config.members, seasons=seasons, stores=stores,
                              rng=member_rng, rnd=member_rnd, end_on=config.end_on,
                              advance=progress.advance)

    write_rng, _ = streams[5]
    if not config.with_sales:
        _write_members(session, drafts, stores, _member_ids(drafts, write_rng), progress)
        _finish(session)
        return
    sales = _simulate_sales(config, drafts, products, seasons, stores, streams, progress)
    member_ids = _member_ids(drafts, write_rng)
    when = schedule(sales, seasons=seasons, stores=stores, rng=write_rng)
    progress.stage("Setting up the loyalty programme", 1)
    outbox_before = session.scalar(select(func.coalesce(func.max(OutboxEvent.seq), 0))) or 0
    timeline = Timeline.of(start_on=config.start_on, end_on=config.end_on,
                           tz=ZoneInfo(TIMEZONE))
    coffee = next(p.category_id for p in products if p.category == CATEGORY_INDEX["coffee"])
    programme = set_up(session, timeline=timeline, staff=staff, products=products,
                       coffee_category_id=coffee)
    progress.advance()
    progress.stage("Replaying the loyalty programme", len(drafts))
    loyalty_rng, loyalty_rnd = streams[6]
    ledgers = replay.replay(programme=programme, members=drafts, sales=sales, when=when,
                            stores=stores, products=products, labels=staff.labels,
                            start_on=config.start_on, spend_order=config.spend_order,
                            rng=loyalty_rng, rnd=loyalty_rnd, advance=progress.advance)
    _, prepaid_rnd = streams[8]
    gift_cards = prepaid.plan_gift_cards(sales, when, programme=programme, rnd=prepaid_rnd)
    _tag_vips(drafts, sales)

    _write_members(session, drafts, stores, member_ids, progress)
    _write_sales(session, sales, when, drafts, products, stores, write_rng, progress)
    tables = Base.metadata.tables
    feedback_rng, feedback_rnd = streams[7]
    invitations, responses = feedback.survey_rows(
        members=drafts, sales=sales, when=when, stores=stores, programme=programme,
        rng_ids=IdSource(feedback_rng), rnd=feedback_rnd)
    loyalty_tables: list[tuple[str, Sequence[str], list[tuple[Any, ...]]]] = [
        *ledgers.tables(), ("survey_invitations", feedback.INVITATION_COLUMNS, invitations),
        ("survey_responses", feedback.RESPONSE_COLUMNS, responses)]
    progress.stage("Writing the loyalty ledgers", sum(len(t[2]) for t in loyalty_tables))
    for name, columns, table_rows in loyalty_tables:
        bulk.insert_rows(session, tables[name], columns, table_rows, on_chunk=progress.advance)
    progress.stage("Complaints, calls and gift cards", 3)
    _services(session, programme=programme, staff=staff, drafts=drafts, sales=sales,
              when=when, stores=stores, ledgers=ledgers, gift_cards=gift_cards,
              rnd=prepaid_rnd, feedback_rnd=feedback_rnd, progress=progress)
    # The services' events are history: processed, so the worker does not act on them now.
    session.execute(update(OutboxEvent).where(OutboxEvent.seq > outbox_before,
                                              OutboxEvent.processed_at.is_(None))
                    .values(processed_at=OutboxEvent.occurred_at))
    _finish(session, [name for name, _, _ in loyalty_tables])


def _simulate_sales(config: DemoConfig, drafts: list[MemberDraft], products: list[ProductRef],
                    seasons: Seasons, stores: list[StoreRef],
                    streams: list[tuple[np.random.Generator, random.Random]],
                    progress: Progress) -> list[SaleDraft]:
    """Every member's purchases (member by member), then the walk-ins."""
    profile_rng, profile_rnd = streams[2]
    add_shopping_profiles(drafts, products=products, rng=profile_rng, rnd=profile_rnd)
    progress.stage("Simulating purchases", len(drafts))
    _, purchase_rnd = streams[3]
    sales: list[SaleDraft] = []
    last_member = -1
    for sale in simulate_member_sales(drafts, products=products, seasons=seasons,
                                      stores=stores, rnd=purchase_rnd):
        if sale.member != last_member:
            progress.advance(sale.member - last_member)
            last_member = sale.member
        sales.append(sale)
    progress.advance(len(drafts) - 1 - last_member)
    walk_ins = round(len(sales) * config.walk_in_share / (1 - config.walk_in_share))
    progress.stage("Simulating walk-in sales", walk_ins)
    walk_rng, walk_rnd = streams[4]
    for sale in simulate_walk_ins(walk_ins, products=products, seasons=seasons,
                                  stores=stores, rng=walk_rng, rnd=walk_rnd):
        sales.append(sale)
        progress.advance()
    return sales


def _write_sales(session: Session, sales: list[SaleDraft], when: Schedule,
                 drafts: list[MemberDraft], products: list[ProductRef], stores: list[StoreRef],
                 rng: np.random.Generator, progress: Progress) -> None:
    progress.stage("Numbering receipts", 1)
    rows = assemble(sales, when, members=drafts, products=products, stores=stores, rng=rng)
    progress.advance()
    tables = Base.metadata.tables
    progress.stage("Writing sales", len(rows.sales) + len(rows.lines) + len(rows.discounts)
                   + len(rows.payments))
    sale_tables: tuple[tuple[str, Sequence[str], Sequence[tuple[object, ...]]], ...] = (
        ("sales", SALE_COLUMNS, rows.sales), ("sale_lines", LINE_COLUMNS, rows.lines),
        ("sale_discounts", DISCOUNT_COLUMNS, rows.discounts),
        ("sale_payments", PAYMENT_COLUMNS, rows.payments))
    for name, columns, table_rows in sale_tables:
        bulk.insert_rows(session, tables[name], columns, table_rows, on_chunk=progress.advance)


def _services(session: Session, *, programme: Programme, staff: Staff,
              drafts: list[MemberDraft], sales: list[SaleDraft], when: Schedule,
              stores: list[StoreRef], ledgers: replay.LoyaltyRows,
              gift_cards: prepaid.GiftCardPlan, rnd: random.Random,
              feedback_rnd: random.Random, progress: Progress) -> None:
    """The few things that go through the services, each at the time it happened."""
    prepaid.issue_gift_cards(session, gift_cards, programme=programme, staff=staff,
                             stores=stores, when=when)
    progress.advance()
    grooming = list(session.scalars(select(Product.id).where(
        Product.sku.in_(["SVC-002", "SVC-003"])).order_by(Product.sku)))
    prepaid.sell_packages(session, programme=programme, staff=staff, members=drafts,
                          sales=sales, when=when, stores=stores, products=grooming, rnd=rnd)
    progress.advance()
    feedback.complaints_and_calls(session, programme=programme, staff=staff, members=drafts,
                                  sales=sales, when=when, stores=stores, loyalty=ledgers,
                                  rnd=feedback_rnd)
    # the nightly coupon job on what the services issued (apology coupons run out too)
    offers.expire_due(session, clock=FixedClock(programme.timeline.now))
    session.flush()
    progress.advance()


def _finish(session: Session, more_tables: Sequence[str] = ()) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Fresh statistics for the bulk-loaded tables: until autovacuum gets to them the
        # planner guesses, e.g. a sequential scan of member_tags for 25 members' tags.
        session.execute(text("ANALYZE " + ", ".join([*BULK_TABLES, *more_tables])))
    session.flush()


def summarize(session: Session) -> DemoSummary:
    """Count what the database holds (used after a build and when data is already there)."""
    def count(stmt: Select[Any]) -> int:
        return int(session.scalar(stmt) or 0)

    def rows(model: Any) -> int:
        return count(select(func.count()).select_from(model))

    lunar = Member.birthday_calendar == "lunar"
    last_sale_at = session.scalar(select(func.max(Sale.occurred_at)))
    tiers = tuple((name, int(n)) for name, n in session.execute(
        select(Tier.name, func.count(MemberTier.member_id))
        .outerjoin(MemberTier, MemberTier.tier_id == Tier.id)
        .group_by(Tier.id, Tier.name, Tier.rank).order_by(Tier.rank)))
    # "now" for the programme: the night after the last sale (paid periods running then)
    night = (as_utc(last_sale_at) + timedelta(days=1)) if last_sale_at else None
    running = Membership.status == "active"
    if night is not None:
        running = running & (Membership.starts_at <= night) & (Membership.ends_at > night)
    paid = session.execute(select(func.count(func.distinct(Membership.member_id)))
                           .where(running)).scalar() or 0
    expiring = session.execute(select(func.count(func.distinct(Membership.member_id))).where(
        running, Membership.ends_at <= (night or datetime.now(UTC)) + timedelta(days=30))
    ).scalar() or 0
    answers = [(csat, nps) for csat, nps in session.execute(
        select(SurveyResponse.csat, SurveyResponse.nps))]
    outstanding = count(select(func.coalesce(
        func.sum(PointsAccount.available + PointsAccount.pending), 0)))
    return DemoSummary(
        stores=rows(Store),
        staff=rows(User),
        categories=rows(Category),
        products=rows(Product),
        members=rows(Member),
        birthdays=count(select(func.count()).where(Member.birthday_calendar.is_not(None))),
        lunar_birthdays=count(select(func.count()).where(lunar)),
        leap_month_birthdays=count(select(func.count()).where(
            lunar, Member.birth_leap_month.is_(True))),
        sms_consents=count(select(func.count()).where(Member.sms_consent.is_(True))),
        email_consents=count(select(func.count()).where(Member.email_consent.is_(True))),
        consent_events=rows(ConsentEvent),
        member_sales=count(select(func.count()).where(Sale.member_id.is_not(None))),
        walk_in_sales=count(select(func.count()).where(Sale.member_id.is_(None))),
        sale_lines=rows(SaleLine),
        revenue_minor=count(select(func.coalesce(func.sum(Sale.total_minor), 0))),
        first_sale_at=session.scalar(select(func.min(Sale.occurred_at))),
        last_sale_at=last_sale_at,
        tiers=tiers,
        paid_members=int(paid),
        paid_expiring=int(expiring),
        points_outstanding=outstanding,
        points_pending=count(select(func.coalesce(func.sum(PointsAccount.pending), 0))),
        points_value_minor=_points_value(session, outstanding),
        wallets=rows(WalletAccount),
        wallet_principal_minor=count(select(func.coalesce(
            func.sum(WalletAccount.principal_minor), 0))),
        wallet_bonus_minor=count(select(func.coalesce(func.sum(WalletAccount.bonus_minor), 0))),
        coupons_issued=rows(Coupon),
        coupons_redeemed=rows(CouponRedemption),
        stamp_cards=rows(StampCard),
        gift_card_balance_minor=count(select(func.coalesce(func.sum(GiftCard.balance_minor),
                                                           0))),
        packages=rows(MemberPackage),
        complaints=rows(Complaint),
        complaints_open=count(select(func.count()).where(
            Complaint.status.in_(["open", "in_progress"]))),
        callbacks_open=count(select(func.count()).where(CallbackTask.status == "open")),
        survey_invitations=rows(SurveyInvitation),
        survey_responses=len(answers),
        nps=feedback_rules.summarise(answers).nps,
    )


def _points_value(session: Session, points: int) -> int:
    """Minor units ``points`` pay for at the till under the programme's rate (0 without one)."""
    program = session.get(LoyaltyProgram, 1)
    if program is None or not points:
        return 0
    return int(loyalty_rules.points_value_minor(
        points, points_per_major_redeemed=program.points_per_major_redeemed,
        minor_per_major=replay.MINOR_PER_MAJOR))


def member_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Member)) or 0)


def holds_data(session: Session) -> bool:
    """Whether anything the demo would create (stores, users, products) already exists."""
    return any(session.scalar(select(func.count()).select_from(model))
               for model in (Store, User, Product))


def wipe(session: Session) -> None:
    """Delete every row of every patron table (not the schema, not alembic_version)."""
    tables = list(reversed(Base.metadata.sorted_tables))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables)
                             + " RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            session.execute(delete(table))
    session.flush()

