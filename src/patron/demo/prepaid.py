"""Gift cards and visit packages in the demo: few, so they go through the services.

A corporate customer bought a batch of gift cards; walk-in customers have been paying
with them since, so those sales carry a ``gift_card`` payment and each card's ledger has
a REDEEM entry pointing at the sale. Which sales and how much is decided before the
sales are written (``plan_gift_cards``), the cards themselves are issued and spent
through ``cards.service`` once the sales exist (``issue_gift_cards``), each call with
the clock set to when it happened. Pet owners bought grooming packages (10 visits) and
have used some of their visits (``sell_packages``); the till sells a package through
``cards.service.sell_package`` rather than as a sale line, so the sale is not linked.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy.orm import Session

from patron.cards import service as cards
from patron.core.clock import FixedClock
from patron.demo.members import PERSONAS, MemberDraft, StoreRef
from patron.demo.programme import Programme, Staff
from patron.demo.purchases import Payment, SaleDraft, Schedule

GIFT_CARDS = 40
GIFT_CARD_FACE_MINOR = 20_000
GIFT_CARD_VALID_DAYS = 365
GIFT_CARD_SALES = 45  # walk-in sales paid (partly) with a gift card
PACKAGES = 30  # per 20,000 members (at least 3)
VISIT_EVERY_DAYS = 21  # how often a package holder brings the pet in


@dataclass(frozen=True)
class GiftCardUse:
    sale: int  # draft index
    store: int
    card: int  # position in the batch
    amount_minor: int


@dataclass(frozen=True)
class GiftCardPlan:
    store: int  # the store that sold the batch
    uses: tuple[GiftCardUse, ...]


def plan_gift_cards(sales: list[SaleDraft], when: Schedule, *, programme: Programme,
                    rnd: random.Random) -> GiftCardPlan:
    """Pick the walk-in sales paid with the batch's cards and set their payments."""
    start = programme.timeline.gift_cards_at + timedelta(days=1)
    candidates = [i for i in when.order if sales[i].member < 0 and when.at[i] >= start
                  and sales[i].total_minor > 0]
    chosen = sorted(rnd.sample(candidates, min(GIFT_CARD_SALES, len(candidates))),
                    key=lambda i: when.at[i])
    balances = [GIFT_CARD_FACE_MINOR] * GIFT_CARDS
    in_hands = 0  # cards reach their holders over time; a holder uses theirs until empty
    uses = []
    for i in chosen:
        if in_hands < GIFT_CARDS and (in_hands == 0 or rnd.random() < 0.5):
            in_hands += 1
        live = [k for k in range(in_hands) if balances[k]]
        if not live:
            continue
        k = rnd.choice(live)
        total = sales[i].total_minor
        amount = min(balances[k], total)
        balances[k] -= amount
        rest = total - amount
        payments: list[Payment] = [("gift_card", amount, None)]
        if rest:
            payments.append(("card" if rnd.random() < 0.8 else "cash", rest, None))
        sales[i].payments = payments
        uses.append(GiftCardUse(i, sales[i].store, k, amount))
    return GiftCardPlan(store=0, uses=tuple(uses))


def issue_gift_cards(session: Session, plan: GiftCardPlan, *, programme: Programme,
                     staff: Staff, stores: list[StoreRef], when: Schedule) -> None:
    """Issue the batch and spend it as planned, through ``cards.service``."""
    store = stores[plan.store]
    manager = staff.managers[store.id]
    _, issued = cards.issue_gift_cards(
        session, clock=FixedClock(programme.timeline.gift_cards_at), actor=manager,
        name="企业福利卡 200 元", count=GIFT_CARDS, face_value_minor=GIFT_CARD_FACE_MINOR,
        valid_days=GIFT_CARD_VALID_DAYS, store_id=store.id)
    for use in plan.uses:
        card = issued[use.card]
        at = when.at[use.sale]
        cashier = staff.cashiers[stores[use.store].id]
        check = cards.check_pin(session, clock=FixedClock(at), code=card.card.code,
                                pin=card.pin)
        check.raise_for_failure()
        cards.redeem_gift_card(session, clock=FixedClock(at), actor=cashier,
                               code=card.card.code, pin=card.pin, amount_minor=use.amount_minor,
                               sale_id=when.sale_ids[use.sale],
                               reference=when.receipts[use.sale])


def sell_packages(session: Session, *, programme: Programme, staff: Staff,
                  members: list[MemberDraft], sales: list[SaleDraft], when: Schedule,
                  stores: list[StoreRef], products: list[uuid.UUID],
                  rnd: random.Random) -> int:
    """Pet owners who visited after the package launched buy one at a visit and come back
    for grooming every few weeks; returns how many packages were sold."""
    t = programme.timeline
    pet = next(k for k, persona in enumerate(PERSONAS) if persona.key == "pet")
    first_visit: dict[int, int] = {}
    until = t.now - timedelta(days=7)
    for i in when.order:
        d = sales[i]
        if t.packages_at < when.at[i] < until and d.member >= 0 \
                and members[d.member].persona == pet and d.member not in first_visit:
            first_visit[d.member] = i
    wanted = max(3, round(PACKAGES * len(members) / 20_000))
    buyers = sorted(rnd.sample(sorted(first_visit), min(wanted, len(first_visit))))
    for m in buyers:
        i = first_visit[m]
        store = stores[sales[i].store]
        cashier = staff.cashiers[store.id]
        sold_at = when.at[i] + timedelta(minutes=2)
        package = cards.sell_package(session, clock=FixedClock(sold_at), actor=cashier,
                                     member_id=members[m].id,
                                     package_product_id=programme.package_product_id,
                                     store_id=store.id)
        service = rnd.choice(products)
        visit = sold_at
        while True:
            visit += timedelta(days=rnd.uniform(0.6, 1.5) * VISIT_EVERY_DAYS)
            local = visit.astimezone(t.tz)
            visit = datetime.combine(local.date(), time(rnd.randint(10, 20), rnd.randrange(60)),
                                     tzinfo=t.tz)
            if visit >= t.now or package.visits_left == 0:
                break
            cards.use_visit(session, clock=FixedClock(visit), actor=cashier,
                            member_id=members[m].id, package_id=package.id,
                            product_id=service, store_id=store.id)
    return len(buyers)
