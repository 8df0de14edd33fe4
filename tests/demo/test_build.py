"""The demo chain in a real database (SQLite, or PostgreSQL with PATRON_TEST_DATABASE_URL).

One small build (300 members, six months) is read into memory once per module and checked
from several angles; the determinism test and the CLI test build their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Row, select

from patron.auth.models import UserStore
from patron.catalog.models import Product
from patron.core import migrate
from patron.core.db import Database
from patron.demo import DemoConfig, build_demo, wipe
from patron.loyalty.models import PointsEntry
from patron.members import rules
from patron.members.models import Anniversary, ConsentEvent, Member, MemberTag, Store
from patron.members.schemas import MemberCreate
from patron.sales import service as sales_service
from patron.sales.models import Sale, SaleDiscount, SaleLine

END_ON = date(2026, 11, 23)
SMALL = DemoConfig(end_on=END_ON, seed=7, members=300, years=0.5)


@dataclass
class Snapshot:
    members: list[Row[Any]]
    consents: list[Row[Any]]
    tags: list[Row[Any]]
    anniversaries: list[Row[Any]]
    sales: list[Row[Any]]
    lines: list[Row[Any]]
    discounts: list[Row[Any]]
    stores: dict[Any, Row[Any]]
    staff_stores: set[tuple[Any, Any]]
    products: dict[Any, Row[Any]]
    books_problems: list[str]


def _snapshot(db: Database) -> Snapshot:
    with db.read() as s:
        return Snapshot(
            members=list(s.execute(select(Member.__table__))),
            consents=list(s.execute(select(ConsentEvent.__table__))),
            tags=list(s.execute(select(MemberTag.__table__))),
            anniversaries=list(s.execute(select(Anniversary.__table__))),
            sales=list(s.execute(select(Sale.__table__).order_by(Sale.occurred_at,
                                                                 Sale.receipt_no))),
            lines=list(s.execute(select(SaleLine.__table__))),
            discounts=list(s.execute(select(SaleDiscount.__table__))),
            stores={r.id: r for r in s.execute(select(Store.__table__))},
            staff_stores={(r.user_id, r.store_id) for r in s.execute(select(UserStore.__table__))},
            products={r.id: r for r in s.execute(select(Product.__table__))},
            books_problems=sales_service.verify(s),
        )


@pytest.fixture(scope="module")
def demo(database_url: str) -> Iterator[Snapshot]:
    """The small demo chain, built once per module and read into memory.

    It holds its own engine rather than the ``db`` fixture, so the per-test table cleanup
    does not run after every read-only check; it wipes the tables itself at the end.
    """
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    try:
        with database.write() as s:
            build_demo(s, config=SMALL)
        yield _snapshot(database)
    finally:
        with database.write() as s:
            wipe(s)
        database.dispose()


def test_same_seed_gives_same_members_sales_and_programme(db: Database) -> None:
    def fingerprint() -> tuple[list[Any], list[Any], list[Any]]:
        with db.read() as s:
            people = list(s.execute(select(Member.id, Member.phone, Member.card_no, Member.name)
                                    .order_by(Member.joined_at, Member.id)))
            sales = list(s.execute(select(Sale.id, Sale.receipt_no, Sale.occurred_at,
                                          Sale.total_minor, Sale.points_earned)
                                   .order_by(Sale.occurred_at, Sale.receipt_no)))
            # (the services' rows -- a complaint's points -- have random ids: not compared)
            points = list(s.execute(select(PointsEntry.kind, PointsEntry.available_delta,
                                           PointsEntry.pending_delta, PointsEntry.occurred_at)
                                    .order_by(PointsEntry.seq)))
        return people, sales, points

    with db.write() as s:
        summary = build_demo(s, config=SMALL)
    first = fingerprint()
    with db.write() as s:
        wipe(s)
        again_summary = build_demo(s, config=SMALL)
    again = fingerprint()
    assert first == again
    assert summary == again_summary  # tiers, points, wallets, coupons, complaints, surveys
    assert len(first[0]) == SMALL.members and first[1] and first[2]
    assert summary.points_outstanding > 0 and summary.coupons_issued > 0


def test_another_seed_gives_another_programme(db: Database) -> None:
    with db.write() as s:
        summary = build_demo(s, config=SMALL)
        wipe(s)
        other = build_demo(s, config=replace(SMALL, seed=8))
    assert summary.points_outstanding != other.points_outstanding


def test_every_phone_is_valid_e164_and_unique(demo: Snapshot) -> None:
    phones = [m.phone for m in demo.members]
    assert len(set(phones)) == len(phones) == SMALL.members
    assert all(rules.normalise_phone(p, "CN") == p for p in phones)
    assert all(m.phone_last4 == m.phone[-4:] for m in demo.members)


def test_every_card_passes_luhn_and_is_unique(demo: Snapshot) -> None:
    cards = [m.card_no for m in demo.members]
    assert len(set(cards)) == len(cards)
    assert all(rules.is_valid_card_no(c) and len(c) == 12 for c in cards)


def test_every_member_is_a_request_enrolment_would_accept(demo: Snapshot) -> None:
    tags: dict[Any, list[str]] = {}
    for t in demo.tags:
        tags.setdefault(t.member_id, []).append(t.tag)
    anniversaries: dict[Any, list[dict[str, Any]]] = {}
    for a in demo.anniversaries:
        anniversaries.setdefault(a.member_id, []).append(
            {"kind": a.kind, "label": a.label, "on": a.on})
    for m in demo.members:
        request = MemberCreate(
            name=m.name, phone=m.phone, email=m.email, gender=m.gender,
            birthday_calendar=m.birthday_calendar, birth_year=m.birth_year,
            birth_month=m.birth_month, birth_day=m.birth_day,
            birth_leap_month=m.birth_leap_month, tags=tags.get(m.id, []),
            anniversaries=anniversaries.get(m.id, []), preferences=m.preferences,
            home_store_id=m.home_store_id, referral_source=m.referral_source,
            sms_consent=m.sms_consent, email_consent=m.email_consent)
        assert {rules.normalise_tag(t) for t in request.tags} == set(request.tags)
        assert request.email is None or str(request.email) == m.email


def test_birthdays_are_valid_and_about_a_fifth_lunar(demo: Snapshot) -> None:
    with_birthday = [m for m in demo.members if m.birthday_calendar is not None]
    for m in with_birthday:
        assert rules.validate_birthday(m.birthday_calendar, m.birth_year, m.birth_month,
                                       m.birth_day, m.birth_leap_month) is not None
    assert 0.7 <= len(with_birthday) / len(demo.members) <= 0.9
    lunar = [m for m in with_birthday if m.birthday_calendar == "lunar"]
    assert 0.12 <= len(lunar) / len(with_birthday) <= 0.3
    assert all(m.birth_year is not None for m in lunar)


def test_consent_flags_match_enrolment_consent_events(demo: Snapshot) -> None:
    events = {(e.member_id, e.channel) for e in demo.consents}
    assert len(events) == len(demo.consents)
    assert all(e.granted and e.source == "enrolment" for e in demo.consents)
    by_id = {m.id: m for m in demo.members}
    for e in demo.consents:
        assert e.at == by_id[e.member_id].joined_at
        assert e.by_user_id == by_id[e.member_id].enrolled_by_id
    for m in demo.members:
        assert m.sms_consent == ((m.id, "sms") in events)
        assert m.email_consent == ((m.id, "email") in events)
        assert m.email is not None or not m.email_consent
    sms_share = sum(m.sms_consent for m in demo.members) / len(demo.members)
    assert 0.6 <= sms_share <= 0.8


def test_members_are_enrolled_by_staff_of_their_store_before_their_first_sale(
    demo: Snapshot,
) -> None:
    first_sale: dict[Any, Any] = {}
    for sale in demo.sales:
        if sale.member_id is not None and sale.member_id not in first_sale:
            first_sale[sale.member_id] = sale
    for m in demo.members:
        assert (m.enrolled_by_id, m.enrolled_store_id) in demo.staff_stores
        assert m.status == "active" and m.joined_at == m.updated_at
        assert first_sale[m.id].occurred_at > m.joined_at
        assert first_sale[m.id].store_id == m.enrolled_store_id
        assert m.id.version == 7


def test_sales_add_up_like_the_books_check_requires(demo: Snapshot) -> None:
    assert demo.books_problems == []
    lines_by_sale: dict[Any, list[Row[Any]]] = {}
    for line in demo.lines:
        lines_by_sale.setdefault(line.sale_id, []).append(line)
    discounts = Counter[Any]()
    for d in demo.discounts:
        discounts[d.sale_id] += d.amount_minor
    for sale in demo.sales:
        lines = lines_by_sale[sale.id]
        assert sorted(line.line_no for line in lines) == list(range(1, len(lines) + 1))
        for line in lines:
            assert line.total_minor == line.quantity * line.unit_price_minor - line.discount_minor
            assert line.unit_price_minor == demo.products[line.product_id].price_minor
        assert sale.subtotal_minor == sum(ln.quantity * ln.unit_price_minor for ln in lines)
        assert sale.discount_minor == sum(line.discount_minor for line in lines)
        assert sale.discount_minor == discounts[sale.id]
        assert sale.total_minor == sum(line.total_minor for line in lines)
        assert sale.total_minor == sale.subtotal_minor - sale.discount_minor > 0
        assert sale.source == "import"


def test_sales_happen_in_opening_hours_with_unique_receipts(demo: Snapshot) -> None:
    receipts = {(s.store_id, s.receipt_no) for s in demo.sales}
    assert len(receipts) == len(demo.sales)
    start = SMALL.start_on
    for sale in demo.sales:
        local = sale.occurred_at.astimezone(ZoneInfo(demo.stores[sale.store_id].timezone))
        assert 10 <= local.hour < 22
        assert start <= local.date() < END_ON
    walk_ins = sum(s.member_id is None for s in demo.sales)
    assert 0.15 <= walk_ins / len(demo.sales) <= 0.35


def test_purchase_counts_are_heterogeneous_and_some_members_lapse(demo: Snapshot) -> None:
    counts = Counter(s.member_id for s in demo.sales if s.member_id is not None)
    last = {s.member_id: s.occurred_at for s in demo.sales if s.member_id is not None}
    per_member = [counts[m.id] for m in demo.members]
    one_time = sum(c == 1 for c in per_member) / len(per_member)
    assert min(per_member) >= 1  # everyone joined at a purchase
    assert 0.1 <= one_time <= 0.7
    assert max(per_member) >= 8
    cutoff = max(last.values()) - timedelta(days=60)
    lapsed = [m for m in demo.members if counts[m.id] >= 2 and last[m.id] < cutoff]
    assert len(lapsed) >= 5


def test_vip_tags_go_to_the_biggest_spenders(demo: Snapshot) -> None:
    spend = Counter[Any]()
    for sale in demo.sales:
        if sale.member_id is not None:
            spend[sale.member_id] += sale.total_minor
    vips = {t.member_id for t in demo.tags if t.tag == "VIP"}
    assert len(vips) == SMALL.members // 20
    cheapest_vip = min(spend[m] for m in vips)
    assert sum(spend[m.id] > cheapest_vip for m in demo.members) < len(vips)
