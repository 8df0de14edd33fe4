"""Build the demo chain in one unit of work: stores, staff, catalogue, members, purchases.

Stores and staff go through the services (``members.service.create_store``,
``auth.service.create_user``), so they are audited and hashed like real ones. Members and
sales are generated in memory from the seed and bulk-inserted (``bulk``): tens of thousands
of enrolments through the service would take minutes, and historical members need
historical timestamps the service (which uses the clock's "now") cannot give. The rows are
what the service would have written: same normalisation and validation, consent events as
evidence for every granted consent, UUIDv7 ids from the join time. ``member.joined`` outbox
events are not written: nothing should react to history as if it were new.

Everything random comes from ``numpy.random.SeedSequence(seed)``: one independent stream
per stage, so the same seed gives the same members, phones and purchases, and a change to
one stage does not reshuffle the others.
"""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.catalog.models import Category, Product
from patron.core.clock import FixedClock
from patron.core.registry import Base
from patron.demo import bulk
from patron.demo.catalogue import create_catalogue
from patron.demo.ids import unix_ms, uuid7_batch
from patron.demo.members import (
    MemberDraft,
    StoreRef,
    add_shopping_profiles,
    generate_members,
)
from patron.demo.purchases import (
    DISCOUNT_COLUMNS,
    LINE_COLUMNS,
    SALE_COLUMNS,
    SaleDraft,
    assemble,
    simulate_member_sales,
    simulate_walk_ins,
)
from patron.demo.seasons import build_seasons
from patron.members import rules
from patron.members import service as members_service
from patron.members.models import ConsentEvent, Member, Store
from patron.members.schemas import StoreCreate
from patron.sales.models import Sale, SaleLine

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


def _create_chain(session: Session, config: DemoConfig) -> list[StoreRef]:
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
    refs = []
    for index, spec in enumerate(STORES):
        store, open_day = stores[spec.code]
        people = sorted(staff[spec.code], key=lambda u: u.role != Role.MANAGER.value)
        refs.append(StoreRef(index=index, id=store.id, code=spec.code, tz=tz, share=spec.share,
                             open_day=open_day, staff_ids=tuple(u.id for u in people)))
    return refs


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


def _write_members(session: Session, drafts: list[MemberDraft], stores: list[StoreRef],
                   rng: np.random.Generator, progress: Progress) -> None:
    tables = {name: Base.metadata.tables[name] for name in
              ("members", "member_tags", "member_anniversaries", "consent_events")}
    tags = [(m.id, tag) for m in drafts for tag in m.tags]
    anniversaries = [(m, a) for m in drafts for a in m.anniversaries]
    anniversary_ids = uuid7_batch(rng, [unix_ms(m.joined_at) for m, _ in anniversaries])
    consents = [(m, channel) for m in drafts
                for channel, granted in (("sms", m.sms_consent), ("email", m.email_consent))
                if granted]
    consent_ids = uuid7_batch(rng, [unix_ms(m.joined_at) for m, _ in consents])

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
            spend[sale.member] += sum(q * price - disc for _, q, price, disc in sale.lines)
    top = max(1, len(drafts) // 20)
    for index in np.argsort(-spend, kind="stable")[:top].tolist():
        drafts[index].tags = sorted({*drafts[index].tags, "VIP"})


def build_demo(session: Session, *, config: DemoConfig,
               progress: Progress | None = None) -> DemoSummary:
    """Generate the whole demo chain into an empty, migrated database (caller commits)."""
    # A build allocates millions of small, long-lived objects; the cyclic collector would
    # rescan them again and again (a third of the run time) while finding nothing to free.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _build(session, config, progress or NoProgress())
    finally:
        if was_enabled:
            gc.enable()
    return summarize(session)


def _build(session: Session, config: DemoConfig, progress: Progress) -> None:
    streams = _streams(config.seed, 6)
    seasons = build_seasons(config.start_on, config.days)

    progress.stage("Stores, staff and catalogue", 3)
    stores = _create_chain(session, config)
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

    sales: list[SaleDraft] = []
    if config.with_sales:
        profile_rng, profile_rnd = streams[2]
        add_shopping_profiles(drafts, products=products, rng=profile_rng, rnd=profile_rnd)
        progress.stage("Simulating purchases", len(drafts))
        _, purchase_rnd = streams[3]
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
        _tag_vips(drafts, sales)

    write_rng, _ = streams[5]
    _write_members(session, drafts, stores, write_rng, progress)
    if sales:
        progress.stage("Numbering receipts", 1)
        rows = assemble(sales, members=drafts, products=products, seasons=seasons,
                        stores=stores, rng=write_rng)
        progress.advance()
        progress.stage("Writing sales", len(rows.sales) + len(rows.lines) + len(rows.discounts))
        tables = Base.metadata.tables
        bulk.insert_rows(session, tables["sales"], SALE_COLUMNS, rows.sales,
                         on_chunk=progress.advance)
        bulk.insert_rows(session, tables["sale_lines"], LINE_COLUMNS, rows.lines,
                         on_chunk=progress.advance)
        bulk.insert_rows(session, tables["sale_discounts"], DISCOUNT_COLUMNS, rows.discounts,
                         on_chunk=progress.advance)
    if session.get_bind().dialect.name == "postgresql":
        # Fresh statistics for the bulk-loaded tables: until autovacuum gets to them the
        # planner guesses, e.g. a sequential scan of member_tags for 25 members' tags.
        session.execute(text("ANALYZE " + ", ".join(BULK_TABLES)))
    session.flush()


def summarize(session: Session) -> DemoSummary:
    """Count what the database holds (used after a build and when data is already there)."""
    def count(stmt: Select[Any]) -> int:
        return int(session.scalar(stmt) or 0)

    lunar = Member.birthday_calendar == "lunar"
    return DemoSummary(
        stores=count(select(func.count()).select_from(Store)),
        staff=count(select(func.count()).select_from(User)),
        categories=count(select(func.count()).select_from(Category)),
        products=count(select(func.count()).select_from(Product)),
        members=count(select(func.count()).select_from(Member)),
        birthdays=count(select(func.count()).where(Member.birthday_calendar.is_not(None))),
        lunar_birthdays=count(select(func.count()).where(lunar)),
        leap_month_birthdays=count(select(func.count()).where(
            lunar, Member.birth_leap_month.is_(True))),
        sms_consents=count(select(func.count()).where(Member.sms_consent.is_(True))),
        email_consents=count(select(func.count()).where(Member.email_consent.is_(True))),
        consent_events=count(select(func.count()).select_from(ConsentEvent)),
        member_sales=count(select(func.count()).where(Sale.member_id.is_not(None))),
        walk_in_sales=count(select(func.count()).where(Sale.member_id.is_(None))),
        sale_lines=count(select(func.count()).select_from(SaleLine)),
        revenue_minor=count(select(func.coalesce(func.sum(Sale.total_minor), 0))),
        first_sale_at=session.scalar(select(func.min(Sale.occurred_at))),
        last_sale_at=session.scalar(select(func.max(Sale.occurred_at))),
    )


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

