"""Test data for campaigns: random members with every kind of fact a segment reads, written
straight to the tables (fast, and exactly what the reference evaluator is told), plus a
hypothesis strategy of rule trees over that data."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy.orm import Session

from patron.analytics.tables import (
    LIFECYCLE_STAGES,
    LOYALTY_TYPES,
    RFM_SEGMENTS,
    AnalyticsRun,
    MemberScore,
)
from patron.catalog.models import Category, Product
from patron.feedback.models import Complaint
from patron.loyalty.models import MemberTier, PointsAccount, Tier
from patron.members.models import Member, MemberTag
from patron.offers.models import Coupon, CouponRedemption, CouponTemplate
from patron.sales.models import Sale, SaleLine
from patron.wallet.models import WalletAccount
from tests.campaigns.reference import MemberFact, SaleFact, ScoreFact

TAGS = ("vip", "wholesale", "new mum", "staff")
_numbers = itertools.count(1)


@dataclass
class Catalogue:
    stores: list[uuid.UUID]
    tiers: list[str]
    tier_ids: dict[str, uuid.UUID]
    products: list[tuple[uuid.UUID, uuid.UUID]]  # product, category
    categories: list[uuid.UUID]
    templates: list[uuid.UUID]


def make_catalogue(session: Session, now: datetime, stores: list[uuid.UUID]) -> Catalogue:
    """Tiers, two categories of two products each, two coupon templates."""
    n = next(_numbers)
    tiers = {}
    for rank, code in enumerate(("silver", "gold", "black")):
        tier = Tier(code=f"{code}", name=code.title(), rank=rank + 100 * n, threshold=rank)
        session.add(tier)
        session.flush()
        tiers[code] = tier.id
    products, categories = [], []
    for c in range(2):
        category = Category(code=f"C{n}-{c}", name=f"Category {c}")
        session.add(category)
        session.flush()
        categories.append(category.id)
        for p in range(2):
            product = Product(sku=f"P{n}-{c}-{p}", name=f"Product {c}{p}",
                              category_id=category.id, price_minor=1000, active=True)
            session.add(product)
            session.flush()
            products.append((product.id, category.id))
    templates = []
    for t in range(2):
        template = CouponTemplate(name=f"T{t}", description="", kind="fixed",
                                  amount_minor=500, min_spend_minor=0, scope="all",
                                  validity="days", valid_days=30, active=True,
                                  restore_on_refund=False, created_at=now, updated_at=now)
        session.add(template)
        session.flush()
        templates.append(template.id)
    return Catalogue(stores, list(tiers), tiers, products, categories, templates)


def _at(rng: random.Random, now: datetime, max_days: int) -> datetime:
    return now - timedelta(seconds=rng.randint(0, max_days * 86_400))


def random_members(session: Session, cat: Catalogue, rng: random.Random, n: int,
                   now: datetime, as_of: date | None) -> list[MemberFact]:
    """``n`` members with random facts, written to the tables; their facts returned."""
    facts: list[MemberFact] = []
    for _ in range(n):
        k = next(_numbers)
        calendar = rng.choice((None, "solar", "solar", "lunar"))
        fact = MemberFact(
            id=uuid.uuid4(), home_store_id=rng.choice(cat.stores),
            joined_at=_at(rng, now, 500),
            status="deleted" if rng.random() < 0.05 else "active",
            tier=rng.choice([None, *cat.tiers]),
            tags=set(rng.sample(TAGS, rng.randint(0, 2))),
            birthday_calendar=calendar,
            birth_month=rng.randint(1, 12) if calendar and rng.random() < 0.9 else None,
            sms_consent=rng.random() < 0.6, email_consent=rng.random() < 0.4,
            gender=rng.choice((None, "female", "male", "other")))
        session.add(Member(
            id=fact.id, card_no=f"77{k:010d}", phone=f"+86139{k:08d}", phone_last4=f"{k:04d}"[-4:],
            name=f"Member {k}", email=f"m{k}@example.com" if rng.random() < 0.7 else None,
            gender=fact.gender, birthday_calendar=fact.birthday_calendar,
            birth_month=fact.birth_month, birth_day=1 if fact.birth_month else None,
            home_store_id=fact.home_store_id, enrolled_store_id=fact.home_store_id,
            sms_consent=fact.sms_consent, email_consent=fact.email_consent,
            status=fact.status, joined_at=fact.joined_at, updated_at=now,
            tags=[MemberTag(tag=t) for t in sorted(fact.tags)]))
        session.flush()
        if fact.tier:
            session.add(MemberTier(member_id=fact.id, tier_id=cat.tier_ids[fact.tier],
                                   since=fact.joined_at, source="earned"))
        for _s in range(rng.choice((0, 0, 1, 2, 3, 5))):
            occurred = _at(rng, now, 400)
            lines = []
            refunded_sale = rng.random() < 0.1
            for line_no in range(rng.randint(1, 2)):
                product, category = rng.choice(cat.products)
                qty = rng.randint(1, 3)
                back = qty if refunded_sale else (rng.randint(0, qty) if rng.random() < 0.2 else 0)
                lines.append((product, category, qty, back, line_no + 1,
                              rng.choice((500, 1200, 9900))))
            total = sum(q * price for _, _, q, _, _, price in lines)
            refunded = total if refunded_sale else (
                rng.randint(0, total) if rng.random() < 0.15 else 0)
            sale = Sale(store_id=fact.home_store_id, member_id=fact.id,
                        receipt_no=f"R{next(_numbers)}", source="pos", occurred_at=occurred,
                        recorded_at=occurred, subtotal_minor=total, discount_minor=0,
                        total_minor=total, refunded_minor=refunded,
                        status="refunded" if refunded_sale else "completed")
            session.add(sale)
            session.flush()
            for product, category, qty, back, line_no, price in lines:
                session.add(SaleLine(sale_id=sale.id, line_no=line_no, product_id=product,
                                     quantity=qty, unit_price_minor=price, discount_minor=0,
                                     total_minor=qty * price, refunded_quantity=back,
                                     category_id=category))
            fact.sales.append(SaleFact(occurred, sale.status, total, refunded,
                                       [(p, c, q, b) for p, c, q, b, _, _ in lines]))
        for _r in range(rng.choice((0, 0, 0, 1, 2))):
            template = rng.choice(cat.templates)
            redeemed = _at(rng, now, 200)
            coupon = Coupon(template_id=template, member_id=fact.id,
                            code=f"CP{next(_numbers):010d}", status="redeemed", source="manual",
                            issued_at=redeemed - timedelta(days=1), issued_by="test",
                            valid_from=redeemed - timedelta(days=1),
                            valid_until=redeemed + timedelta(days=30), void_reason="")
            session.add(coupon)
            session.flush()
            session.add(CouponRedemption(coupon_id=coupon.id, template_id=template,
                                         member_id=fact.id, store_id=fact.home_store_id,
                                         eligible_minor=1000, discount_minor=100,
                                         actor_label="test", redeemed_at=redeemed))
            fact.redemptions.append((template, redeemed))
        if rng.random() < 0.5:
            fact.wallet_minor = rng.choice((0, 500, 10_000, 25_000))
            principal = fact.wallet_minor - fact.wallet_minor // 5
            session.add(WalletAccount(member_id=fact.id, principal_minor=principal,
                                      bonus_minor=fact.wallet_minor - principal,
                                      created_at=now, updated_at=now))
        if rng.random() < 0.6:
            fact.points = rng.choice((0, 50, 100, 1500))
            session.add(PointsAccount(member_id=fact.id, available=fact.points, pending=0,
                                      debt=0, lifetime_earned=fact.points, updated_at=now))
        for _c in range(rng.choice((0, 0, 0, 1))):
            opened = _at(rng, now, 300)
            status = rng.choice(("open", "in_progress", "resolved", "closed"))
            done = status in ("resolved", "closed")
            session.add(Complaint(
                store_id=fact.home_store_id, member_id=fact.id, channel="in_store",
                category="other", severity="normal", status=status, description="x",
                opened_at=opened, opened_by="test",
                first_response_due_at=opened + timedelta(hours=1),
                resolution_due_at=opened + timedelta(days=2),
                resolved_at=opened + timedelta(hours=5) if done else None,
                closed_at=opened + timedelta(hours=6) if status == "closed" else None,
                updated_at=now))
            fact.complaints.append((opened, status))
        if as_of is not None and rng.random() < 0.8:
            buyer = rng.random() < 0.8
            fact.score = ScoreFact(
                rfm_segment=rng.choice(RFM_SEGMENTS) if buyer else None,
                p_alive=round(rng.random(), 3) if buyer else None,
                clv_minor=rng.choice((0, 20_000, 150_000, 600_000)) if buyer else None,
                lifecycle_stage=rng.choice(LIFECYCLE_STAGES),
                loyalty_type=rng.choice(LOYALTY_TYPES),
                next_purchase_on=as_of + timedelta(days=rng.randint(-15, 40))
                if buyer and rng.random() < 0.8 else None)
            session.add(score_row(as_of, fact.id, fact.score))
        facts.append(fact)
    session.flush()
    return facts


def score_row(as_of: date, member_id: uuid.UUID, s: ScoreFact) -> MemberScore:
    return MemberScore(
        as_of=as_of, member_id=member_id, purchases=0, total_net_minor=0, net_90_minor=0,
        net_prev_90_minor=0, net_365_minor=0, rfm_segment=s.rfm_segment, p_alive=s.p_alive,
        clv_minor=s.clv_minor, lifecycle_stage=s.lifecycle_stage, satisfaction="unknown",
        loyalty_type=s.loyalty_type, replenishment_categories=0, bond_financial=0.0,
        bond_social=0.0, bond_structural=0.0, next_purchase_on=s.next_purchase_on)


def record_snapshot(session: Session, as_of: date, now: datetime) -> None:
    session.add(AnalyticsRun(as_of=as_of, started_at=now, finished_at=now, status="succeeded",
                             stages={}, params={}, members=0, error=""))
    session.flush()


# ---------------------------------------------------------------- rule trees


OPS = ("<", "<=", ">", ">=", "=")


def _negated(s: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(s, st.booleans()).map(lambda t: {**t[0], "negate": True} if t[1] else t[0])


def conditions(cat: Catalogue, today: date) -> st.SearchStrategy[dict[str, Any]]:
    # windows around SET_WINDOW_DAYS (90) too, so both ways of compiling one are exercised
    some_days = st.one_of(st.sampled_from((1, 7, 30, 60, 89, 90, 91, 180, 365)),
                          st.integers(1, 420))
    days = st.one_of(st.none(), some_days)
    day = st.integers(0, 520).map(lambda d: (today - timedelta(days=d)).isoformat())
    stores = [str(s) for s in cat.stores]
    products = [str(p) for p, _ in cat.products]
    categories = [str(c) for c in cat.categories]
    templates = [str(t) for t in cat.templates]

    def pick(values: Any, min_size: int = 1) -> st.SearchStrategy[list[Any]]:
        return st.lists(st.sampled_from(values), min_size=min_size, max_size=3, unique=True)

    return _negated(st.one_of(
        st.fixed_dictionaries({"field": st.just("tier"),
                               "value": pick([*cat.tiers, "nosuch"])}),
        st.fixed_dictionaries({"field": st.just("home_store"), "value": pick(stores)}),
        st.fixed_dictionaries({"field": st.just("tags"), "op": st.sampled_from(("any", "all")),
                               "value": pick(TAGS)}),
        st.one_of(
            st.fixed_dictionaries({"field": st.just("joined"),
                                   "op": st.sampled_from(("before", "on_or_after")),
                                   "value": day}),
            st.fixed_dictionaries({"field": st.just("joined"), "op": st.just("within_days"),
                                   "value": some_days})),
        st.fixed_dictionaries({"field": st.just("birthday_month"), "value": st.one_of(
            st.lists(st.integers(1, 12), min_size=1, max_size=3),
            st.sampled_from(("current", "next")))}),
        st.fixed_dictionaries({"field": st.sampled_from(("sms_consent", "email_consent")),
                               "value": st.booleans()}),
        st.fixed_dictionaries({"field": st.just("gender"),
                               "value": pick(("female", "male", "other", "unknown"))}),
        st.one_of(
            st.fixed_dictionaries({"field": st.just("last_purchase"),
                                   "op": st.sampled_from(("ever", "never"))}),
            st.fixed_dictionaries({"field": st.just("last_purchase"),
                                   "op": st.sampled_from(("within_days", "not_within_days")),
                                   "value": some_days}),
            st.fixed_dictionaries({"field": st.just("last_purchase"),
                                   "op": st.sampled_from(("before", "on_or_after")),
                                   "value": day})),
        st.fixed_dictionaries({"field": st.just("purchase_count"), "op": st.sampled_from(OPS),
                               "value": st.integers(0, 5), "days": days}),
        st.fixed_dictionaries({"field": st.just("spend"), "op": st.sampled_from(OPS),
                               "value": st.sampled_from((0, 1000, 9900, 30_000)),
                               "days": days}),
        st.fixed_dictionaries({"field": st.just("bought"), "of": st.just("product"),
                               "value": pick(products), "days": days}),
        st.fixed_dictionaries({"field": st.just("bought"), "of": st.just("category"),
                               "value": pick(categories), "days": days}),
        st.fixed_dictionaries({"field": st.just("used_coupon"),
                               "value": pick(templates, 0), "days": days}),
        st.fixed_dictionaries({"field": st.just("wallet_balance"), "op": st.sampled_from(OPS),
                               "value": st.sampled_from((0, 500, 10_000, 20_000))}),
        st.fixed_dictionaries({"field": st.just("points_balance"), "op": st.sampled_from(OPS),
                               "value": st.sampled_from((0, 50, 100, 1000))}),
        st.fixed_dictionaries({"field": st.just("complaints"),
                               "op": st.sampled_from(("any", "open")), "days": days}),
        st.fixed_dictionaries({"field": st.just("rfm_segment"), "value": pick(RFM_SEGMENTS)}),
        st.fixed_dictionaries({"field": st.just("lifecycle_stage"),
                               "value": pick(LIFECYCLE_STAGES)}),
        st.fixed_dictionaries({"field": st.just("loyalty_type"),
                               "value": pick(LOYALTY_TYPES)}),
        st.fixed_dictionaries({"field": st.just("p_alive"),
                               "op": st.sampled_from(("<", "<=", ">", ">=")),
                               "value": st.sampled_from((0.0, 0.25, 0.5, 0.9, 1.0))}),
        st.fixed_dictionaries({"field": st.just("clv_minor"), "op": st.sampled_from(OPS),
                               "value": st.sampled_from((0, 20_000, 150_000, 500_000))}),
        st.fixed_dictionaries({"field": st.just("next_purchase_on"),
                               "value": st.integers(0, 30),
                               "overdue_days": st.integers(0, 10)}),
    ).map(lambda d: {k: v for k, v in d.items() if v is not None}))


def rules(cat: Catalogue, today: date) -> st.SearchStrategy[dict[str, Any]]:
    """Rule trees up to three levels deep over the catalogue's values."""
    return st.recursive(
        conditions(cat, today),
        lambda children: _negated(st.fixed_dictionaries({
            "op": st.sampled_from(("all", "any")),
            "children": st.lists(children, min_size=1, max_size=4)})),
        max_leaves=8)
