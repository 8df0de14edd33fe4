"""Checkout and refunds: the one place that composes members, loyalty and wallet at the till.

Design overview
---------------
Checkout validates the whole basket first (store, member, products, promotions, coupons,
points, wallet, payment split) and then, in the caller's single transaction, writes the
sale, its lines, discounts, promotions and payments, spends wallet and points, credits
cashback, earns points (pending until the return window passes), re-evaluates the tier
(upgrades at once) and writes ``sale.completed`` to the outbox. Any error rolls the whole
transaction back, so a refused sale leaves no trace.

Pricing order (docs/promotions.md): promotions first, on the shelf prices
(``offers.promotions.price_basket``); then coupons, refused when a promotion that does
not stack with coupons applied; then the tier discount on what is left. A gift a
promotion gives is a line at zero price. Cashback is settled on what each line finally
cost and credited to the member's wallet as bonus. The limited promotions that may apply
have their counters locked before pricing (``promotion_service.read_usage``), so limits
and budgets hold with any number of tills. ``quote`` runs the same pricing without
writing, locking or reserving anything: the till shows the total, the savings and the
near misses, and the sale then prices the same basket the same way.

Amounts are minor units. Discounts are spread over lines with the largest-remainder rule
(``core.money.allocate``) so lines always add up to the sale. Refunds are computed
*cumulatively*: the amount, points clawed back and the split over payment methods for
"everything refunded so far" is computed from scratch and the previous total subtracted,
so any sequence of partial refunds ends exactly at the original figures, never beyond.

Refunds of a promoted sale reprice the units kept with the promotions as they were at
the sale (``reprice_after_return`` on the stored snapshots): the customer gets back what
they paid for the returned units minus the discount the kept units lose, so a free item
is not kept for free once the items that earned it are returned. The cumulative refund is
never allowed to fall (a later return that would "owe" the shop money gives nothing, and
the full return still ends at the sale's total). Cashback is taken back from the wallet
in proportion to the amount refunded, bonus first, never below zero; what the wallet no
longer holds is recorded on the refund and the sale's promotion as unrecovered (the shop's
loss, shown in the promotion's report) rather than deducted from the money returned, so
refunds and payments still reconcile exactly. Uses of a promotion are never given back;
its budget is, by the discount and cashback taken back.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.cards import rules as cards_rules
from patron.cards import service as cards
from patron.care import holidays
from patron.care.calendar import occasion_dates
from patron.catalog import queries as catalog
from patron.catalog.models import Product
from patron.core.clock import Clock
from patron.core.errors import (
    Conflict,
    FieldProblem,
    InsufficientBalance,
    NotFound,
    PatronError,
    PermissionDenied,
    ValidationFailed,
)
from patron.core.events import emit
from patron.core.memo import memo
from patron.core.money import allocate, divide_round_half_up, minor_digits, proportion
from patron.loyalty import membership, perks
from patron.loyalty import rules as loyalty_rules
from patron.loyalty import service as loyalty
from patron.loyalty.models import LoyaltyProgram, MembershipPlan, Tier
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.models import Member, Store
from patron.offers import promotion_service as promotions
from patron.offers import service as offers
from patron.offers.promotion_schemas import PeriodFigures, PromotionReport
from patron.offers.promotions import (
    AppliedPromotion,
    BasketLine,
    GiftLine,
    LineSaving,
    MemberFacts,
    PricedBasket,
    PricedLine,
    PricingContext,
    ReturnQuote,
    price_basket,
    reprice_after_return,
    settle_cashback,
)
from patron.offers.promotions.engine import STAGE_OF_KIND
from patron.sales.models import (
    Refund,
    RefundLine,
    Sale,
    SaleDiscount,
    SaleLine,
    SalePayment,
    SalePromotion,
)
from patron.sales.schemas import (
    NearMissRead,
    NextTier,
    PaymentsIn,
    QuoteCoupon,
    QuoteLine,
    Receipt,
    ReceiptDiscount,
    ReceiptLine,
    ReceiptPayment,
    ReceiptPromotion,
    RefundCreate,
    RefundRead,
    SaleCreate,
    SaleQuote,
    TierInfo,
)
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder

MAX_BACKDATE = timedelta(days=30)  # an offline till may report a sale this late
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class TillConfig:
    """Deployment settings checkout needs (kept out of the domain's imports of settings)."""

    currency: str
    region: str
    timezone: str
    spend_order: SpendOrder


@dataclass
class _Line:
    product_id: uuid.UUID
    category_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    discount_minor: int = 0
    promotion_minor: int = 0  # the parts of discount_minor, for quotes
    coupon_minor: int = 0
    tier_minor: int = 0
    gift_promotion_id: uuid.UUID | None = None

    @property
    def gross_minor(self) -> int:
        return self.quantity * self.unit_price_minor

    @property
    def net_minor(self) -> int:
        return self.gross_minor - self.discount_minor


@dataclass
class _Basket:
    lines: list[_Line]
    discounts: list[tuple[str, str, str | None, int]] = field(default_factory=list)

    @property
    def subtotal_minor(self) -> int:
        return sum(line.gross_minor for line in self.lines)

    @property
    def discount_minor(self) -> int:
        return sum(line.discount_minor for line in self.lines)


def _resolve_member(session: Session, data: SaleCreate, region: str) -> Member | None:
    refs = [r for r in (data.member_id, data.card_no, data.phone) if r]
    if len(refs) > 1:
        raise ValidationFailed("Identify the member by one of member_id, card_no or phone",
                               "member_id")
    member = None
    field_name = "member_id"
    if data.member_id:
        member = members.get_member(session, member_id=data.member_id)
    elif data.card_no:
        field_name = "card_no"
        member = members.find_by_card(session, card_no=data.card_no)
    elif data.phone:
        field_name = "phone"
        member = members.find_by_phone(
            session, phone_e164=member_rules.normalise_phone(data.phone, region, field="phone"))
    if refs and (member is None or member.status != MemberStatus.ACTIVE.value):
        raise ValidationFailed("No active member found", field_name, code="unknown_member")
    return member


def _basket(session: Session, data: SaleCreate) -> _Basket:
    products = catalog.find_products(
        session, ids={ln.product_id for ln in data.lines if ln.product_id},
        skus={ln.sku for ln in data.lines if ln.sku})
    by_id = {p.id: p for p in products}
    by_sku = {p.sku: p for p in products}
    _seen_products(session).update(by_id)  # the receipt names the lines from these
    lines = []
    for i, ln in enumerate(data.lines):
        product = by_id.get(ln.product_id) if ln.product_id else by_sku.get(ln.sku or "")
        if product is None:
            ref = "product_id" if ln.product_id else "sku"
            raise ValidationFailed("Unknown product", f"lines.{i}.{ref}", code="unknown_product")
        if not product.active:
            raise ValidationFailed(f"{product.name} is not on sale", f"lines.{i}",
                                   code="inactive_product")
        price = product.price_minor if ln.unit_price_minor is None else ln.unit_price_minor
        lines.append(_Line(product.id, product.category_id, product.sku, product.name,
                           ln.quantity, price))
    return _Basket(lines)


def _seen_products(session: Session) -> dict[uuid.UUID, Product]:
    """Products this transaction has already read, so the receipt does not read them again."""
    seen: dict[uuid.UUID, Product] = memo(session, "sales.products", dict)
    return seen


def _apply_discount(basket: _Basket, *, kind: str, label: str, reference: str | None,
                    amount_minor: int) -> list[int]:
    """Spread a basket-level discount over the lines in proportion to what is left of them;
    returns each line's share."""
    if amount_minor <= 0:
        return [0] * len(basket.lines)
    shares = allocate(amount_minor, [line.net_minor for line in basket.lines])
    for line, share in zip(basket.lines, shares, strict=True):
        line.discount_minor += share
    basket.discounts.append((kind, label, reference, amount_minor))
    return shares


def _is_birthday_month(member: Member, today_month: int, year: int) -> bool:
    """Is the member's birthday celebrated in this solar month? A lunar birthday is looked
    up in the lunar year(s) that overlap the month, not in the lunar year numbered like it."""
    if member.birth_month is None or member.birth_day is None:
        return False
    birthday = member_rules.validate_birthday(member.birthday_calendar, None, member.birth_month,
                                              member.birth_day, member.birth_leap_month)
    if birthday is None:
        return False
    first = date(year, today_month, 1)
    last = date(year + today_month // 12, today_month % 12 + 1, 1) - timedelta(days=1)
    return bool(occasion_dates(birthday, first, last))


def _occurred_at(data: SaleCreate, now: datetime) -> datetime:
    if data.occurred_at is None:
        return now
    at = data.occurred_at
    if at.tzinfo is None:
        raise ValidationFailed("occurred_at needs a time zone offset", "occurred_at")
    if at > now + MAX_CLOCK_SKEW:
        raise ValidationFailed("occurred_at is in the future", "occurred_at")
    if at < now - MAX_BACKDATE:
        raise ValidationFailed("occurred_at is more than 30 days ago", "occurred_at")
    return at.astimezone(UTC)


# ---------------------------------------------------------------- pricing


@functools.lru_cache(maxsize=64)
def _holidays_on(day: date) -> frozenset[date]:
    """The store-local day as a holiday set for the promotions' schedules (every holiday of
    the calendar counts; the lunar ones take a calendar conversion, hence the cache)."""
    return frozenset({day}) if holidays.is_holiday(day) else frozenset()


def _member_facts(session: Session, *, member: Member, tier: Tier | None,
                  occurred_at: datetime, tz: ZoneInfo, windows: frozenset[int],
                  plans: bool, segments: frozenset[uuid.UUID]) -> MemberFacts:
    """What the promotions may know about the member: tenure, tier, segments, the paid
    plans whose perks they have (read only when some promotion asks, ``plans``), and how
    many purchases they made before this one (ever, and in each cashback window). A fully
    refunded sale is not a purchase."""
    columns: list[Any] = [func.count()]
    ordered = sorted(windows)
    for days in ordered:
        since = occurred_at - timedelta(days=days)
        columns.append(func.coalesce(func.sum(case(
            (and_(Sale.occurred_at >= since, Sale.occurred_at <= occurred_at), 1), else_=0)), 0))
    row = session.execute(select(*columns).where(Sale.member_id == member.id,
                                                 Sale.status != "refunded")).one()
    return MemberFacts(
        member_id=member.id, joined_on=member.joined_at.astimezone(tz).date(),
        tier_code=tier.code if tier else None,
        plan_codes=perks.perk_plan_codes(session, member_id=member.id, now=occurred_at)
        if plans else frozenset(),
        segment_ids=promotions.member_segments(session, member_id=member.id, among=segments,
                                               now=occurred_at, tz=tz.key),
        previous_purchases=int(row[0]),
        purchases_within_days={days: int(n) for days, n in zip(ordered, row[1:], strict=True)})


@dataclass
class _Plan:
    """A basket priced and checked, ready to be written (checkout) or shown (quote)."""

    store: Store
    occurred_at: datetime
    now: datetime
    member: Member | None
    basket: _Basket
    gifts: list[_Line]
    plans: dict[uuid.UUID, MembershipPlan]
    catalogue: promotions.Catalogue
    priced: PricedBasket | None
    quotes: list[offers.CouponQuote]
    coupon_lines: list[offers.QuoteLine]
    tier: Tier | None
    tier_discount: tuple[str, int] | None
    total: int
    points_value: int
    program: LoyaltyProgram | None
    cashback: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def cashback_minor(self) -> int:
        return sum(self.cashback.values())


def _price_promotions(session: Session, *, store: Store, occurred_at: datetime,
                      member: Member | None, tier: Tier | None, basket: _Basket,
                      catalogue: promotions.Catalogue, lock: bool) -> PricedBasket | None:
    """Promotions on the shelf prices (stage 1-4, cashback provisional). With ``lock`` the
    counters of the limited promotions that may apply are locked first (checkout)."""
    book = catalogue.book
    if not len(book):
        return None
    tz = ZoneInfo(store.timezone)
    facts = _member_facts(session, member=member, tier=tier, occurred_at=occurred_at, tz=tz,
                          windows=book.cashback_windows(), plans=book.needs_plan_perks(),
                          segments=book.segment_ids()) if member is not None else None
    context = PricingContext(occurred_at=occurred_at, store_id=store.id,
                             store_timezone=store.timezone, member=facts,
                             holidays=_holidays_on(occurred_at.astimezone(tz).date()))
    lines = [BasketLine(str(i + 1), ln.product_id, ln.category_id, ln.quantity,
                        ln.unit_price_minor) for i, ln in enumerate(basket.lines)]
    candidates = promotions.limited_candidates(book, context=context, lines=lines)
    if candidates:
        usage = promotions.read_usage(session, book=book, promotion_ids=candidates,
                                      member_id=member.id if member else None, lock=lock)
        context = replace(context, usage=usage)
    return price_basket(lines, context=context, book=book)


def _gift_lines(session: Session, priced: PricedBasket) -> list[_Line]:
    if not priced.gifts:
        return []
    products = {p.id: p for p in catalog.find_products(
        session, ids={g.product_id for g in priced.gifts})}
    _seen_products(session).update(products)
    gifts = []
    for gift in priced.gifts:
        product = products.get(gift.product_id)
        if product is None:  # checked when the promotion was saved; a product is never deleted
            raise Conflict("A promotion's gift product no longer exists", "lines",
                           code="gift_product_missing")
        gifts.append(_Line(product.id, product.category_id, product.sku, product.name,
                           gift.quantity, 0, gift_promotion_id=gift.promotion_id))
    return gifts


def _plan(session: Session, *, clock: Clock, actor: Principal, till: TillConfig,
          data: SaleCreate, lock: bool) -> _Plan:
    """Everything checkout checks and computes before it writes; ``quote`` stops here."""
    store_id = data.store_id or actor.default_store_id
    if store_id is None:
        raise ValidationFailed("Which store is this sale in?", "store_id", code="required")
    require_store(actor, store_id)
    store = members.get_store(session, store_id=store_id)
    now = clock.now()
    occurred_at = _occurred_at(data, now)
    member = _resolve_member(session, data, till.region)
    basket = _basket(session, data)
    plans = membership.plans_by_product(session, [ln.product_id for ln in basket.lines])
    for i, ln in enumerate(basket.lines):
        if ln.product_id in plans and member is None:
            raise ValidationFailed("A paid membership is sold to a member: identify them",
                                   f"lines.{i}", code="membership_needs_member")
    if lock and data.receipt_no and session.scalar(select(Sale.id).where(
            Sale.store_id == store_id, Sale.receipt_no == data.receipt_no)) is not None:
        raise Conflict("This receipt number was already recorded at this store", "receipt_no",
                       code="duplicate_receipt")
    if len({c.strip().upper() for c in data.coupon_codes}) != len(data.coupon_codes):
        raise ValidationFailed("The same coupon is given twice", "coupon_codes")

    # Promotions first, on the shelf prices.
    tier = loyalty.member_tier(session, member_id=member.id) if member else None
    catalogue = promotions.book(session)
    priced = _price_promotions(session, store=store, occurred_at=occurred_at, member=member,
                               tier=tier, basket=basket, catalogue=catalogue, lock=lock)
    gifts: list[_Line] = []
    if priced is not None:
        for ln, pl in zip(basket.lines, priced.lines, strict=True):
            ln.promotion_minor = pl.discount_minor
            ln.discount_minor += pl.discount_minor
        for applied in priced.applied:
            if applied.saving_minor:
                basket.discounts.append(("promotion", applied.name, str(applied.promotion_id),
                                         applied.saving_minor))
        gifts = _gift_lines(session, priced)
        if data.coupon_codes and not priced.coupons_allowed:
            names = ", ".join(a.name for a in priced.applied if not a.stackable_with_coupons)
            raise ValidationFailed(f"No coupons with this basket's promotion: {names}",
                                   "coupon_codes", code="coupon_blocked_by_promotion")

    # Then coupons, on what the promotions left; then the tier discount on the rest. A
    # coupon sees a promoted line as one unit at what is left of it (coupons price totals).
    coupon_lines = [offers.QuoteLine(ln.product_id, ln.category_id, ln.quantity,
                                     ln.unit_price_minor) if not ln.promotion_minor
                    else offers.QuoteLine(ln.product_id, ln.category_id, 1, ln.net_minor)
                    for ln in basket.lines]
    quotes = []
    for code in data.coupon_codes:
        q = offers.quote(session, clock=clock, code=code, member_id=member.id if member else None,
                         store_id=store_id, lines=coupon_lines)
        room = [ln.net_minor for ln in basket.lines]
        if any(d > r for d, r in zip(q.line_discounts, room, strict=True)):
            raise ValidationFailed(f"Coupon {q.code} can't be combined with the others given",
                                   "coupon_codes", code="coupon_not_combinable")
        for ln, d in zip(basket.lines, q.line_discounts, strict=True):
            ln.discount_minor += d
            ln.coupon_minor += d
        basket.discounts.append(("coupon", q.label, q.code, q.discount_minor))
        quotes.append(q)
    tier_discount = None
    if tier is not None and tier.discount_pct:
        label = f"{tier.name} -{tier.discount_pct}%"
        amount = proportion(basket.subtotal_minor - basket.discount_minor, tier.discount_pct, 100)
        shares = _apply_discount(basket, kind="tier", label=label, reference=tier.code,
                                 amount_minor=amount)
        for ln, share in zip(basket.lines, shares, strict=True):
            ln.tier_minor += share
        if amount > 0:
            tier_discount = (label, amount)
    total = basket.subtotal_minor - basket.discount_minor

    program = None
    points_value = 0
    if data.points_to_redeem:
        if member is None:
            raise ValidationFailed("Points need a member", "points_to_redeem")
        program = loyalty.get_program(session, clock=clock)
        minor_per_major = 10 ** minor_digits(till.currency)
        value = loyalty_rules.points_value_minor(
            data.points_to_redeem, points_per_major_redeemed=program.points_per_major_redeemed,
            minor_per_major=minor_per_major)
        if value.denominator != 1:
            step = program.points_per_major_redeemed // minor_per_major or 1
            raise ValidationFailed(f"Redeem points in multiples of {step}", "points_to_redeem")
        points_value = int(value)
        have = loyalty.balance(session, clock=clock, member_id=member.id).available
        if have < data.points_to_redeem:
            raise InsufficientBalance(
                f"The member has {have} points available, not {data.points_to_redeem}",
                "points_to_redeem")
    plan = _Plan(store, occurred_at, now, member, basket, gifts, plans, catalogue, priced,
                 quotes, coupon_lines, tier, tier_discount, total, points_value, program)
    if priced is not None and priced.cashback and member is not None:
        settled = settle_cashback(priced, paid_by_line={
            str(i + 1): ln.net_minor for i, ln in enumerate(basket.lines)})
        plan.cashback = {c.promotion_id: c.amount_minor for c in settled if c.amount_minor}
    return plan


def _sale_promotions(plan: _Plan) -> list[SalePromotion]:
    """The promotions that gave something, as applied, for the receipt and for refunds."""
    if plan.priced is None:
        return []
    gifted = {g.promotion_id for g in plan.priced.gifts}
    book = plan.catalogue.book
    rows = []
    for position, a in enumerate(plan.priced.applied):
        cashback = plan.cashback.get(a.promotion_id, 0)
        if not (a.saving_minor or cashback or a.promotion_id in gifted):
            continue  # e.g. cashback that settled to nothing once coupons applied
        rows.append(SalePromotion(
            promotion_id=a.promotion_id, position=position,
            promotion_version=plan.catalogue.versions[a.promotion_id], name=a.name,
            kind=a.kind, definition=book.promotions[a.promotion_id].model_dump(mode="json"),
            tier_code=plan.priced.tier_code, applications=a.applications,
            saving_minor=a.saving_minor, gift_value_minor=a.gift_value_minor,
            cashback_minor=cashback,
            value_minor=a.saving_minor + a.gift_value_minor + cashback,
            allocation=[[int(line_id), amount] for line_id, amount in a.line_savings],
            discount_returned_minor=0, cashback_reclaimed_minor=0,
            cashback_unrecovered_minor=0))
    return rows


@contextlib.contextmanager
def nested_field(prefix: str) -> Iterator[None]:
    """Name a nested payment's field in an error raised by another domain's service
    (``amount_minor`` there is ``payments.gift_cards.0.amount_minor`` here)."""
    try:
        yield
    except PatronError as exc:
        exc.field = f"{prefix}.{exc.field}" if exc.field else prefix
        exc.problems = [replace(p, field=f"{prefix}.{p.field}") for p in exc.problems] \
            or [FieldProblem(exc.field, exc.message, exc.code)]
        raise


def _check_gift_cards(session: Session, *, clock: Clock, payments: PaymentsIn) -> None:
    """Every gift card paid with exists, opens with its PIN, is spendable and holds the
    amount, before anything is written (the redemption re-checks under the card's lock)."""
    codes = [cards_rules.normalise(g.code) for g in payments.gift_cards]
    for index, gift in enumerate(payments.gift_cards):
        prefix = f"payments.gift_cards.{index}"
        if codes.index(codes[index]) != index:
            raise ValidationFailed("The same gift card is listed twice", f"{prefix}.code",
                                   code="duplicate")
        with nested_field(prefix):
            card = cards.gift_card_balance(session, clock=clock, code=gift.code, pin=gift.pin)
        if not cards.is_spendable(card, now=clock.now()):
            raise Conflict("The gift card is void, expired or closed", f"{prefix}.code",
                           code="gift_card_closed")
        if card.balance_minor < gift.amount_minor:
            raise InsufficientBalance(
                f"The gift card holds {card.balance_minor}, less than {gift.amount_minor}",
                f"{prefix}.amount_minor")


def checkout(session: Session, *, clock: Clock, actor: Principal, till: TillConfig,
             data: SaleCreate) -> Sale:
    """Record a sale with everything it moves; see the module docstring."""
    plan = _plan(session, clock=clock, actor=actor, till=till, data=data, lock=True)
    store, member, basket, total = plan.store, plan.member, plan.basket, plan.total
    pay = data.payments
    if pay.wallet_minor:
        if member is None:
            raise ValidationFailed("Stored value needs a member", "payments.wallet_minor")
        have = wallet.balance(session, member_id=member.id).total_minor
        if have < pay.wallet_minor:
            raise InsufficientBalance(f"Stored value is {have}, less than {pay.wallet_minor}",
                                      "payments.wallet_minor")
    _check_gift_cards(session, clock=clock, payments=pay)
    paid = pay.cash_minor + pay.card_minor + pay.wallet_minor + pay.gift_card_minor \
        + plan.points_value
    if paid != total:
        raise ValidationFailed(
            f"Payments add up to {paid} but the sale is {total}", "payments",
            code="payments_mismatch")

    tier = plan.tier
    applied = _sale_promotions(plan)
    sold = basket.lines + plan.gifts
    sale = Sale(
        store_id=store.id, member_id=member.id if member else None, cashier_id=actor.user_id,
        receipt_no=data.receipt_no or _receipt_no(store.code, plan.occurred_at, store.timezone),
        source="pos", occurred_at=plan.occurred_at, recorded_at=plan.now,
        subtotal_minor=basket.subtotal_minor, discount_minor=basket.discount_minor,
        total_minor=total, refunded_minor=0, points_earned=0,
        points_redeemed=data.points_to_redeem, tier_id=tier.id if tier else None,
        status="completed",
        lines=[SaleLine(line_no=i + 1, product_id=ln.product_id, quantity=ln.quantity,
                        unit_price_minor=ln.unit_price_minor, discount_minor=ln.discount_minor,
                        total_minor=ln.net_minor, refunded_quantity=0,
                        category_id=ln.category_id, gift_promotion_id=ln.gift_promotion_id)
               for i, ln in enumerate(sold)],
        discounts=[SaleDiscount(kind=k, label=label, reference=ref, amount_minor=amount)
                   for k, label, ref, amount in basket.discounts],
        applied_promotions=applied,
        payments=[],  # filled below; an initialised collection needs no load for the receipt
    )
    session.add(sale)
    session.flush()
    for q in plan.quotes:
        used = offers.redeem(session, clock=clock, actor=actor, code=q.code,
                             member_id=member.id if member else None, store_id=store.id,
                             sale_id=sale.id, lines=plan.coupon_lines,
                             reference=sale.receipt_no)
        if used.discount_minor != q.discount_minor:  # the coupon changed since the quote
            raise Conflict("The coupon changed while checking out; try again", "coupon_codes")
    if applied:
        promotions.record_uses(session, book=plan.catalogue.book,
                               values={row.promotion_id: row.value_minor for row in applied},
                               member_id=member.id if member else None)
    first_purchase = member is not None and not session.scalar(
        select(func.count()).select_from(Sale).where(Sale.member_id == member.id,
                                                     Sale.id != sale.id))
    payments: list[tuple[str, int, str | None]] = [("cash", pay.cash_minor, None),
                                                   ("card", pay.card_minor, None)]
    if pay.wallet_minor and member:
        entry = wallet.spend(session, clock=clock, actor=actor, member_id=member.id,
                             amount_minor=pay.wallet_minor, order=till.spend_order,
                             store_id=store.id, sale_id=sale.id, reason=sale.receipt_no)
        payments.append(("wallet", pay.wallet_minor, str(entry.id)))
    for index, gift in enumerate(pay.gift_cards):
        with nested_field(f"payments.gift_cards.{index}"):
            redeemed = cards.redeem_gift_card(
                session, clock=clock, actor=actor, code=gift.code, pin=gift.pin,
                amount_minor=gift.amount_minor, store_id=store.id, sale_id=sale.id,
                reference=sale.receipt_no)
        payments.append(("gift_card", gift.amount_minor, str(redeemed.id)))
    if data.points_to_redeem and member:
        loyalty.redeem(session, clock=clock, actor=actor, member_id=member.id,
                       points=data.points_to_redeem, sale_id=sale.id, store_id=store.id,
                       reason=sale.receipt_no)
        payments.append(("points", plan.points_value, str(data.points_to_redeem)))
    for method, amount, ref in payments:
        if amount:
            sale.payments.append(SalePayment(method=method, amount_minor=amount,
                                             refunded_minor=0, reference=ref))
    cashback = sum(row.cashback_minor for row in applied)
    if cashback and member is not None:  # after payment: the sale's wallet spend came first
        wallet.credit_cashback(session, clock=clock, member_id=member.id, amount_minor=cashback,
                               sale_id=sale.id, store_id=store.id,
                               reason=f"cashback {sale.receipt_no}")

    plans = plan.plans
    if member is not None and plans:
        bought: dict[uuid.UUID, int] = {}
        for ln in basket.lines:
            if ln.product_id in plans:
                bought[ln.product_id] = bought.get(ln.product_id, 0) + ln.quantity
        membership.start_from_sale(session, clock=clock, member_id=member.id, sale_id=sale.id,
                                   purchases=[membership.Purchase(plans[pid], qty)
                                              for pid, qty in bought.items()])
    if member is not None:
        program = plan.program or loyalty.get_program(session, clock=clock)
        points_value = plan.points_value
        earn_base = allocate(total - points_value, [ln.net_minor for ln in basket.lines]) \
            if total else [0] * len(basket.lines)
        local = plan.occurred_at.astimezone(ZoneInfo(store.timezone))
        points = loyalty_rules.points_for(
            [loyalty_rules.EarnLine(base, ln.product_id, ln.category_id)
             for base, ln in zip(earn_base, basket.lines, strict=True)],
            points_per_major=program.points_per_major,
            minor_per_major=10 ** minor_digits(till.currency),
            multipliers=loyalty.multipliers(session),
            tier_pct=tier.points_multiplier_pct if tier else 100,
            birthday_pct=program.birthday_multiplier_pct
            if _is_birthday_month(member, local.month, local.year) else None,
            now=plan.occurred_at, rounding=loyalty.rounding(program))
        if points:
            loyalty.earn(session, clock=clock, actor=actor, member_id=member.id, points=points,
                         tz=till.timezone, sale_id=sale.id, store_id=store.id,
                         reason=sale.receipt_no)
            sale.points_earned = points
        loyalty.evaluate_tier(session, clock=clock, member_id=member.id)
        if first_purchase:
            offers.on_first_purchase(session, clock=clock, member_id=member.id,
                                     sale_id=sale.id, amount_minor=total)
        cards.stamps_for_sale(session, clock=clock, member_id=member.id, sale_id=sale.id,
                              store_id=store.id,
                              lines=[(ln.product_id, ln.category_id, ln.quantity)
                                     for ln in basket.lines])
    session.flush()
    emit(session, clock=clock, type="sale.completed", subject_id=sale.member_id,
         store_id=store.id, payload={"sale_id": str(sale.id), "receipt_no": sale.receipt_no,
                                     "member_id": str(sale.member_id) if sale.member_id
                                     else None, "total_minor": total,
                                     "points_earned": sale.points_earned,
                                     "promotion_ids": [str(r.promotion_id) for r in applied],
                                     "cashback_minor": cashback})
    return sale


def quote(session: Session, *, clock: Clock, actor: Principal, till: TillConfig,
          data: SaleCreate) -> SaleQuote:
    """Price a basket exactly as ``checkout`` would now, without writing or locking anything.

    Payments are not checked (the quote tells the till what they must add up to). Run it
    in a read-only session: counters are read, not locked, so a limit another till takes
    in between is only refused (re-priced) at checkout.
    """
    plan = _plan(session, clock=clock, actor=actor, till=till, data=data, lock=False)
    priced = plan.priced
    rows = _sale_promotions(plan)
    names = {pid: p.name for pid, p in plan.catalogue.book.promotions.items()}
    lines = [QuoteLine(line_no=i + 1, product_id=ln.product_id, sku=ln.sku, name=ln.name,
                       quantity=ln.quantity, unit_price_minor=ln.unit_price_minor,
                       promotion_discount_minor=ln.promotion_minor,
                       coupon_discount_minor=ln.coupon_minor,
                       tier_discount_minor=ln.tier_minor, discount_minor=ln.discount_minor,
                       total_minor=ln.net_minor, gift_promotion_id=ln.gift_promotion_id)
             for i, ln in enumerate(plan.basket.lines + plan.gifts)]
    near = [NearMissRead(
        promotion_id=m.promotion_id, name=names.get(m.promotion_id, ""), kind=m.kind,
        message_key=m.message_key, missing_quantity=m.missing_quantity,
        missing_minor=m.missing_minor, products=list(m.products),
        categories=list(m.categories), params=dict(m.params),
        texts=promotions.near_miss_texts(m, currency=till.currency))
        for m in (priced.near_misses if priced else ())]
    basket = plan.basket
    return SaleQuote(
        store_id=plan.store.id, member_id=plan.member.id if plan.member else None,
        occurred_at=plan.occurred_at, currency=till.currency, lines=lines,
        subtotal_minor=basket.subtotal_minor, promotions=[_promotion_read(r) for r in rows],
        promotion_discount_minor=sum(ln.promotion_minor for ln in basket.lines),
        coupons_allowed=priced.coupons_allowed if priced else True,
        coupons=[QuoteCoupon(code=q.code, label=q.label, discount_minor=q.discount_minor)
                 for q in plan.quotes],
        tier_discount=ReceiptDiscount(kind="tier", label=plan.tier_discount[0],
                                      amount_minor=plan.tier_discount[1])
        if plan.tier_discount else None,
        discounts=[ReceiptDiscount(kind=k, label=label, amount_minor=amount)
                   for k, label, _, amount in basket.discounts],
        discount_minor=basket.discount_minor, total_minor=plan.total,
        points_value_minor=plan.points_value, cashback_minor=plan.cashback_minor,
        near_misses=near)


def _promotion_read(row: SalePromotion) -> ReceiptPromotion:
    return ReceiptPromotion(id=row.promotion_id, name=row.name, kind=row.kind,
                            saving_minor=row.saving_minor,
                            gift_value_minor=row.gift_value_minor,
                            cashback_minor=row.cashback_minor)


def _receipt_no(store_code: str, at: datetime, tz: str) -> str:
    local = at.astimezone(ZoneInfo(tz))
    return f"{store_code}-{local:%Y%m%d}-{secrets.token_hex(4).upper()}"


def get_sale(session: Session, *, actor: Principal, sale_id: uuid.UUID) -> Sale:
    sale = session.get(Sale, sale_id)
    if sale is None:
        raise NotFound("No such sale", "sale_id")
    if not actor.can_access_store(sale.store_id):
        raise PermissionDenied("This sale belongs to a store you don't have access to")
    return sale


def member_sales(session: Session, *, member_id: uuid.UUID, limit: int = 20) -> list[Sale]:
    """A member's latest sales, newest first: the purchase history on their own page."""
    return list(session.scalars(select(Sale).where(Sale.member_id == member_id)
                                .order_by(Sale.occurred_at.desc(), Sale.id.desc())
                                .limit(max(1, min(limit, 200)))))


def receipt(session: Session, *, clock: Clock, sale: Sale, currency: str) -> Receipt:
    """The receipt of a sale as it stands now (balances and tier after it)."""
    products = _seen_products(session)
    missing = {ln.product_id for ln in sale.lines} - products.keys()
    if missing:
        products.update((p.id, p) for p in catalog.find_products(session, ids=missing))
    tier = next_tier = None
    points = wallet_minor = None
    if sale.member_id:
        bal = loyalty.balance(session, clock=clock, member_id=sale.member_id)
        points = bal
        wallet_minor = wallet.balance(session, member_id=sale.member_id).total_minor
        current, nxt, value = loyalty.tier_progress(session, clock=clock,
                                                    member_id=sale.member_id)
        tier = TierInfo(code=current.code, name=current.name) if current else None
        if nxt is not None:
            next_tier = NextTier(code=nxt.code, name=nxt.name, threshold=nxt.threshold,
                                 remaining=max(0, nxt.threshold - value))
    return Receipt(
        sale_id=sale.id, receipt_no=sale.receipt_no, store_id=sale.store_id,
        member_id=sale.member_id, occurred_at=sale.occurred_at, currency=currency,
        lines=[ReceiptLine(id=ln.id, line_no=ln.line_no, product_id=ln.product_id,
                           sku=products[ln.product_id].sku, name=products[ln.product_id].name,
                           quantity=ln.quantity, unit_price_minor=ln.unit_price_minor,
                           discount_minor=ln.discount_minor, total_minor=ln.total_minor,
                           refunded_quantity=ln.refunded_quantity,
                           gift_promotion_id=ln.gift_promotion_id) for ln in sale.lines],
        subtotal_minor=sale.subtotal_minor,
        discounts=[ReceiptDiscount(kind=d.kind, label=d.label, amount_minor=d.amount_minor)
                   for d in sale.discounts],
        promotions=[_promotion_read(row) for row in sale.applied_promotions],
        discount_minor=sale.discount_minor, total_minor=sale.total_minor,
        refunded_minor=sale.refunded_minor,
        cashback_minor=sum(row.cashback_minor for row in sale.applied_promotions),
        payments=[ReceiptPayment(method=p.method, amount_minor=p.amount_minor,
                                 refunded_minor=p.refunded_minor)
                  for p in sorted(sale.payments, key=lambda p: p.method)],
        points_earned=sale.points_earned, points_redeemed=sale.points_redeemed,
        points_available=points.available if points else None,
        points_pending=points.pending if points else None,
        points_debt=points.debt if points else None, wallet_balance_minor=wallet_minor,
        tier=tier, next_tier=next_tier, status=sale.status)


# ---------------------------------------------------------------- refunds


@dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    sale: Sale
    returned: list[ReceiptPayment]  # what goes back to the customer, per payment method


def refund(session: Session, *, clock: Clock, actor: Principal, till: TillConfig,
           sale_id: uuid.UUID, data: RefundCreate) -> RefundOutcome:
    """Refund whole lines or parts of lines; see the module docstring for the arithmetic."""
    sale = session.scalar(select(Sale).where(Sale.id == sale_id).with_for_update()
                          .execution_options(populate_existing=True))
    if sale is None:
        raise NotFound("No such sale", "sale_id")
    if not actor.can_access_store(sale.store_id):
        raise PermissionDenied("This sale belongs to a store you don't have access to")
    lines = {ln.id: ln for ln in sale.lines}
    wanted: dict[uuid.UUID, int] = {}
    if data.lines is None:
        wanted = {ln.id: ln.quantity - ln.refunded_quantity for ln in sale.lines
                  if ln.quantity > ln.refunded_quantity}
    else:
        for i, item in enumerate(data.lines):
            if item.line_id not in lines:
                raise ValidationFailed("Not a line of this sale", f"lines.{i}.line_id")
            wanted[item.line_id] = wanted.get(item.line_id, 0) + item.quantity
    if not wanted:
        raise Conflict("Everything on this sale was already refunded", "lines",
                       code="already_refunded")
    for i, (line_id, qty) in enumerate(wanted.items()):
        line = lines[line_id]
        if line.refunded_quantity + qty > line.quantity:
            raise ValidationFailed(
                f"Line {line.line_no}: only {line.quantity - line.refunded_quantity} left to "
                "refund", f"lines.{i}.quantity", code="refund_exceeds_sale")

    applied = list(sale.applied_promotions)
    give_back: dict[uuid.UUID, int] = {}
    if applied:
        refund_lines, amount, give_back = _promoted_refund(session, sale, applied, wanted)
    else:
        refund_lines, amount = [], 0
        for line_id, qty in wanted.items():
            line = lines[line_id]
            before = proportion(line.total_minor, line.refunded_quantity, line.quantity)
            after = proportion(line.total_minor, line.refunded_quantity + qty, line.quantity)
            line.refunded_quantity += qty
            refund_lines.append(RefundLine(sale_line_id=line.id, quantity=qty,
                                           amount_minor=after - before))
            amount += after - before
    old_refunded = sale.refunded_minor
    new_refunded = old_refunded + amount
    sale.refunded_minor = new_refunded
    sale.status = "refunded" if all(ln.refunded_quantity == ln.quantity for ln in sale.lines) \
        else "partially_refunded"
    cashback_total = sum(row.cashback_minor for row in applied)
    claw_cashback = (proportion(cashback_total, new_refunded, sale.total_minor)
                     - proportion(cashback_total, old_refunded, sale.total_minor)
                     ) if cashback_total and sale.total_minor else 0
    if claw_cashback or give_back:  # promotion counters before any wallet: checkout's order
        promotions.lock_budgets(session, promotion_ids=[row.promotion_id for row in applied])

    # split the refund over the payment methods, cumulatively
    pays = sorted(sale.payments, key=lambda p: (p.method, p.id))
    targets = allocate(new_refunded, [p.amount_minor for p in pays]) if pays else []
    deltas = [max(0, min(t, p.amount_minor) - p.refunded_minor) for t, p in zip(targets, pays,
                                                                                 strict=True)]
    shortfall = amount - sum(deltas)
    for i, p in enumerate(pays):  # rounding drift: top up from methods with room left
        if shortfall <= 0:
            break
        room = p.amount_minor - p.refunded_minor - deltas[i]
        extra = min(room, shortfall)
        deltas[i] += extra
        shortfall -= extra
    result = Refund(sale_id=sale.id, store_id=sale.store_id, amount_minor=amount,
                    reason=data.reason, actor_label=actor.label, occurred_at=clock.now(),
                    lines=refund_lines)
    session.add(result)
    session.flush()
    returned: list[ReceiptPayment] = []
    for p, delta in zip(pays, deltas, strict=True):
        if not delta:
            continue
        p.refunded_minor += delta
        returned.append(ReceiptPayment(method=p.method, amount_minor=delta,
                                       refunded_minor=p.refunded_minor))
        if p.method == "wallet" and p.reference:
            wallet.refund_spend(session, clock=clock, actor=actor,
                                entry_id=uuid.UUID(p.reference), amount_minor=delta,
                                reason=f"refund of {sale.receipt_no}")
            result.wallet_returned_minor += delta
        if p.method == "gift_card" and p.reference:
            cards.refund_gift_card_redemption(session, clock=clock, actor=actor,
                                              entry_id=uuid.UUID(p.reference),
                                              amount_minor=delta,
                                              reason=f"refund of {sale.receipt_no}")
    if claw_cashback > 0 and sale.member_id:
        reclaimed = wallet.reclaim_cashback(session, clock=clock, actor=actor,
                                            member_id=sale.member_id, sale_id=sale.id,
                                            amount_minor=claw_cashback,
                                            reason=f"refund of {sale.receipt_no}")
        result.cashback_reclaimed_minor = reclaimed.taken_minor
        result.cashback_unrecovered_minor = reclaimed.unrecovered_minor
        for row, taken, lost in _spread_cashback(applied, reclaimed):
            row.cashback_reclaimed_minor += taken
            row.cashback_unrecovered_minor += lost
            give_back[row.promotion_id] = give_back.get(row.promotion_id, 0) + taken
    if give_back:
        promotions.give_back_budget(session, amounts=give_back)
    if sale.member_id:
        points_back = (proportion(sale.points_redeemed, new_refunded, sale.total_minor)
                       - proportion(sale.points_redeemed, old_refunded, sale.total_minor)
                       ) if sale.total_minor else 0
        if points_back > 0:
            loyalty.return_redeemed(session, clock=clock, actor=actor, member_id=sale.member_id,
                                    points=points_back, tz=till.timezone, sale_id=sale.id,
                                    store_id=sale.store_id)
            result.points_returned = points_back
        claw = (proportion(sale.points_earned, new_refunded, sale.total_minor)
                - proportion(sale.points_earned, old_refunded, sale.total_minor)
                ) if sale.total_minor else 0
        if claw > 0:
            outcome = loyalty.claw_back(session, clock=clock, actor=actor,
                                        member_id=sale.member_id, points=claw, sale_id=sale.id,
                                        store_id=sale.store_id)
            result.points_clawed_back, result.points_debt = outcome.taken, outcome.debt
        categories = {p.id: p.category_id for p in catalog.find_products(
            session, ids={lines[line_id].product_id for line_id in wanted})}
        cards.reverse_stamps_for_sale(
            session, clock=clock, member_id=sale.member_id, sale_id=sale.id, actor=actor,
            lines_refunded=[(lines[line_id].product_id,
                             categories[lines[line_id].product_id], qty)
                            for line_id, qty in wanted.items()])
        if sale.status == "refunded":  # a fully refunded sale gives its coupons back
            offers.restore_for_refund(session, clock=clock, actor=actor, sale_id=sale.id,
                                      refund_id=result.id, reason="refund")
        refunded_products = [lines[line_id].product_id for line_id in wanted]
        if membership.plans_by_product(session, refunded_products):
            membership.cancel_for_refund(session, clock=clock, sale_id=sale.id)
        loyalty.evaluate_tier(session, clock=clock, member_id=sale.member_id)
    session.flush()
    emit(session, clock=clock, type="sale.refunded", subject_id=sale.member_id,
         store_id=sale.store_id, payload={"sale_id": str(sale.id), "refund_id": str(result.id),
                                          "amount_minor": amount})
    return RefundOutcome(result, sale, returned)


def _engine_sale(sale: Sale, applied: Sequence[SalePromotion]
                 ) -> tuple[list[BasketLine], PricedBasket]:
    """The sale as the engine priced it, rebuilt from its lines and applied promotions."""
    savings: dict[str, list[LineSaving]] = {}
    for row in applied:
        for line_no, amount in row.allocation:
            savings.setdefault(str(line_no), []).append(LineSaving(row.promotion_id, amount))
    basket, priced_lines, gifts = [], [], []
    definitions = {row.promotion_id: row.definition for row in applied}
    for ln in sale.lines:
        if ln.gift_promotion_id is not None:
            unit = definitions[ln.gift_promotion_id]["config"].get("gift_value_minor", 0)
            gifts.append(GiftLine(f"gift:{ln.gift_promotion_id}", ln.gift_promotion_id,
                                  ln.product_id, ln.quantity, int(unit)))
            continue
        line_id = str(ln.line_no)
        basket.append(BasketLine(line_id, ln.product_id, ln.category_id, ln.quantity,
                                 ln.unit_price_minor))
        own = tuple(savings.get(line_id, ()))
        original = ln.quantity * ln.unit_price_minor
        discount = sum(x.amount_minor for x in own)
        priced_lines.append(PricedLine(line_id, ln.product_id, ln.category_id, ln.quantity,
                                       ln.unit_price_minor, original, own, discount,
                                       original - discount, True))
    promoted = tuple(AppliedPromotion(
        row.promotion_id, row.name, row.kind, int(STAGE_OF_KIND[row.kind]),
        int(row.definition.get("priority", 100)), bool(row.definition.get("exclusive")),
        bool(row.definition.get("stackable_with_coupons", True)), row.applications,
        row.saving_minor, row.gift_value_minor, row.cashback_minor,
        tuple((str(line_no), amount) for line_no, amount in row.allocation))
        for row in applied)
    subtotal = sum(p.original_minor for p in priced_lines)
    discount = sum(p.discount_minor for p in priced_lines)
    priced = PricedBasket(tuple(priced_lines), promoted, tuple(gifts), (), (), subtotal,
                          discount, subtotal - discount,
                          all(a.stackable_with_coupons for a in promoted), sale.member_id,
                          applied[0].tier_code if applied else None)
    return basket, priced


def _return_quote(sale: Sale, applied: Sequence[SalePromotion]) -> ReturnQuote:
    """Reprice the units kept after every return so far (refunded quantities as they are)."""
    basket, priced = _engine_sale(sale, applied)
    returned = {(f"gift:{ln.gift_promotion_id}" if ln.gift_promotion_id else str(ln.line_no)):
                ln.refunded_quantity for ln in sale.lines if ln.refunded_quantity}
    paid = {str(ln.line_no): ln.total_minor for ln in sale.lines
            if ln.gift_promotion_id is None}
    return reprice_after_return(basket, priced, returned,
                                book=promotions.definitions_book(r.definition for r in applied),
                                paid_by_line=paid)


def _promoted_refund(session: Session, sale: Sale, applied: Sequence[SalePromotion],
                     wanted: Mapping[uuid.UUID, int]
                     ) -> tuple[list[RefundLine], int, dict[uuid.UUID, int]]:
    """This refund of a promoted sale: its lines, its amount and the budget it gives back.

    The quote is cumulative (every unit returned so far); this refund is what it adds to
    the refunds before it, never negative. It is spread over this refund's lines by what
    each line's cumulative share grew (the engine splits the refund over returned lines).
    """
    lines = {ln.id: ln for ln in sale.lines}
    for line_id, qty in wanted.items():
        lines[line_id].refunded_quantity += qty
    quote = _return_quote(sale, applied)
    amount = max(0, quote.refund_minor - sale.refunded_minor)
    before = {line_id: int(paid) for line_id, paid in session.execute(
        select(RefundLine.sale_line_id, func.coalesce(func.sum(RefundLine.amount_minor), 0))
        .join(Refund, Refund.id == RefundLine.refund_id).where(Refund.sale_id == sale.id)
        .group_by(RefundLine.sale_line_id))}
    cumulative = dict(quote.line_refunds)
    ids = list(wanted)
    grew = [max(0, cumulative.get(_engine_line_id(lines[i]), 0) - before.get(i, 0))
            for i in ids]
    shares = allocate(amount, grew if sum(grew) else [1] * len(ids))
    refund_lines = [RefundLine(sale_line_id=i, quantity=wanted[i], amount_minor=share)
                    for i, share in zip(ids, shares, strict=True)]
    # what the customer no longer keeps of each promotion goes back to its budget
    kept = {a.promotion_id: a.saving_minor for a in quote.kept.applied}
    entitled = {g.promotion_id: g.quantity for g in quote.kept.gifts}
    gift_lines = {ln.gift_promotion_id: ln for ln in sale.lines if ln.gift_promotion_id}
    give_back: dict[uuid.UUID, int] = {}
    for row in applied:
        held_value = 0
        gift = gift_lines.get(row.promotion_id)
        if gift is not None and gift.quantity:
            held = min(entitled.get(row.promotion_id, 0), gift.quantity - gift.refunded_quantity)
            held_value = held * (row.gift_value_minor // gift.quantity)
        given = row.saving_minor + row.gift_value_minor
        returned = min(given, max(0, given - kept.get(row.promotion_id, 0) - held_value))
        if returned > row.discount_returned_minor:
            give_back[row.promotion_id] = returned - row.discount_returned_minor
            row.discount_returned_minor = returned
    return refund_lines, amount, give_back


def _engine_line_id(line: SaleLine) -> str:
    return f"gift:{line.gift_promotion_id}" if line.gift_promotion_id else str(line.line_no)


def _spread_cashback(applied: Sequence[SalePromotion], reclaimed: wallet.Reclaimed
                     ) -> list[tuple[SalePromotion, int, int]]:
    """Split what a refund took back of the sale's cashback (and what it could not) over
    the promotions that gave it, in proportion to what each still has outstanding."""
    rows = [r for r in applied if r.cashback_minor]
    left = [r.cashback_minor - r.cashback_reclaimed_minor - r.cashback_unrecovered_minor
            for r in rows]
    if not rows or not sum(left):
        return []
    taken = allocate(min(reclaimed.taken_minor, sum(left)), left)
    rest = [x - t for x, t in zip(left, taken, strict=True)]
    lost = allocate(min(reclaimed.unrecovered_minor, sum(rest)), rest) if sum(rest) \
        else [0] * len(rows)
    return list(zip(rows, taken, lost, strict=True))


def refund_read(session: Session, *, clock: Clock, outcome: RefundOutcome,
                currency: str) -> RefundRead:
    refund_row, sale = outcome.refund, outcome.sale
    return RefundRead(refund_id=refund_row.id, sale_id=sale.id,
                      amount_minor=refund_row.amount_minor,
                      returned=outcome.returned, points_clawed_back=refund_row.points_clawed_back,
                      points_debt=refund_row.points_debt,
                      points_returned=refund_row.points_returned,
                      wallet_returned_minor=refund_row.wallet_returned_minor,
                      cashback_reclaimed_minor=refund_row.cashback_reclaimed_minor,
                      cashback_unrecovered_minor=refund_row.cashback_unrecovered_minor,
                      sale=receipt(session, clock=clock, sale=sale, currency=currency))


# ---------------------------------------------------------------- promotion reports

RETENTION_DAYS = 90


def _usage_history(session: Session, promotion_id: uuid.UUID) -> promotions.UsageHistory:
    """A promotion's counters rebuilt from the sales it applied to (uses are never given
    back; budget is, by what refunds took back)."""
    rows = session.execute(
        select(Sale.member_id, SalePromotion.value_minor - SalePromotion.discount_returned_minor
               - SalePromotion.cashback_reclaimed_minor)
        .join(Sale, Sale.id == SalePromotion.sale_id)
        .where(SalePromotion.promotion_id == promotion_id)).all()
    members_seen = Counter(member_id for member_id, _ in rows if member_id is not None)
    return promotions.UsageHistory(uses=len(rows), budget_spent_minor=sum(int(v) for _, v in rows),
                                   member_uses=dict(members_seen))


promotions.USAGE_HISTORY = _usage_history


def _year_before(at: datetime) -> datetime:
    try:
        return at.replace(year=at.year - 1)
    except ValueError:  # 29 February
        return at.replace(year=at.year - 1, day=28)


def _period(session: Session, stores: frozenset[uuid.UUID], since: datetime,
            until: datetime) -> PeriodFigures:
    stmt = select(func.count(), func.coalesce(func.sum(Sale.total_minor - Sale.refunded_minor), 0),
                  func.count(func.distinct(Sale.member_id))) \
        .where(Sale.occurred_at >= since, Sale.occurred_at < until)
    if stores:
        stmt = stmt.where(Sale.store_id.in_(sorted(stores)))
    count, net, buyers = session.execute(stmt).one()
    return PeriodFigures(since=since, until=until, sales=int(count), net_sales_minor=int(net),
                         members=int(buyers))


def _retained(session: Session, first_at: Mapping[uuid.UUID, datetime]) -> int:
    """Members who bought again (anywhere) within ``RETENTION_DAYS`` after their first
    purchase with the promotion."""
    window = timedelta(days=RETENTION_DAYS)
    retained: set[uuid.UUID] = set()
    ids = sorted(first_at)
    for n in range(0, len(ids), 1000):
        chunk = ids[n:n + 1000]
        lo = min(first_at[m] for m in chunk)
        hi = max(first_at[m] for m in chunk) + window
        for member_id, at in session.execute(
                select(Sale.member_id, Sale.occurred_at)
                .where(Sale.member_id.in_(chunk), Sale.occurred_at > lo, Sale.occurred_at <= hi,
                       Sale.status != "refunded")):
            assert member_id is not None
            if first_at[member_id] < at <= first_at[member_id] + window:
                retained.add(member_id)
    return len(retained)


def promotion_report(session: Session, *, clock: Clock, actor: Principal,
                     promotion_id: uuid.UUID, since: datetime | None = None,
                     until: datetime | None = None) -> PromotionReport:
    """What a promotion gave and what it may have earned over ``[since, until)``.

    Redemptions, members and costs count the sales it applied to (by when they
    happened). Incremental sales compare net sales in the promotion's stores (all stores
    for a chain-wide one) with the period of the same length just before, and with the
    same period a year earlier when the history reaches back that far. The cost per
    retained member divides the net cost by the members who bought again within 90 days
    of their first purchase with it. Defaults: from the promotion's creation up to now.
    """
    require_role(actor, Role.MANAGER)
    record = promotions.get_promotion(session, actor=actor, promotion_id=promotion_id)
    now = clock.now()
    until = until or now + timedelta(microseconds=1)  # up to now, inclusive
    since = since or record.created_at
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ValidationFailed("Give a time zone (e.g. 2026-12-01T00:00:00+08:00)", name)
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if until <= since:
        raise ValidationFailed("until must be after since", "until")
    rows = session.execute(
        select(SalePromotion, Sale.member_id, Sale.occurred_at,
               Sale.total_minor - Sale.refunded_minor)
        .join(Sale, Sale.id == SalePromotion.sale_id)
        .where(SalePromotion.promotion_id == record.id, Sale.occurred_at >= since,
               Sale.occurred_at < until)).all()
    first_at: dict[uuid.UUID, datetime] = {}
    for _, member_id, at, _ in rows:
        if member_id is not None and (member_id not in first_at or at < first_at[member_id]):
            first_at[member_id] = at
    savings = sum(r.saving_minor for r, *_ in rows)
    gifts = sum(r.gift_value_minor for r, *_ in rows)
    cashback = sum(r.cashback_minor for r, *_ in rows)
    returned = sum(r.discount_returned_minor + r.cashback_reclaimed_minor for r, *_ in rows)
    cost = savings + gifts + cashback - returned
    stores = promotions.store_ids(record)
    length = until - since
    period = _period(session, stores, since, until)
    previous = _period(session, stores, since - length, since)
    last_year = None
    start_ly = _year_before(since)
    earliest_stmt = select(func.min(Sale.occurred_at))
    if stores:
        earliest_stmt = earliest_stmt.where(Sale.store_id.in_(sorted(stores)))
    earliest = session.scalar(earliest_stmt)
    if earliest is not None and earliest <= start_ly:
        last_year = _period(session, stores, start_ly, _year_before(until))
    retained = _retained(session, first_at)
    window_complete = all(at + timedelta(days=RETENTION_DAYS) <= now
                          for at in first_at.values())
    return PromotionReport(
        promotion_id=record.id, name=record.name, kind=record.kind, since=since, until=until,
        redemptions=len(rows), unique_members=len(first_at),
        walk_in_redemptions=sum(1 for _, member_id, *_ in rows if member_id is None),
        savings_minor=savings, gift_value_minor=gifts, cashback_minor=cashback,
        returned_minor=returned,
        cashback_unrecovered_minor=sum(r.cashback_unrecovered_minor for r, *_ in rows),
        cost_minor=cost, promoted_sales_minor=sum(int(net) for *_, net in rows),
        period=period, previous_period=previous,
        incremental_sales_minor=period.net_sales_minor - previous.net_sales_minor,
        last_year=last_year,
        incremental_sales_vs_last_year_minor=period.net_sales_minor - last_year.net_sales_minor
        if last_year else None,
        retention_days=RETENTION_DAYS, retained_members=retained,
        retention_window_complete=window_complete,
        cost_per_retained_member_minor=divide_round_half_up(cost, retained) if retained
        else None)


def verify(session: Session, *, limit: int = 100) -> list[str]:
    """Sales whose lines, payments or refunds don't add up (row-level sums are CHECKed)."""
    problems = []
    lines = (select(SaleLine.sale_id, func.sum(SaleLine.total_minor).label("lines_minor"))
             .group_by(SaleLine.sale_id).subquery())
    for sid, sub, lsum in session.execute(
            select(Sale.id, Sale.subtotal_minor - Sale.discount_minor,
                   func.coalesce(lines.c.lines_minor, 0))
            .outerjoin(lines, lines.c.sale_id == Sale.id)
            .where(Sale.subtotal_minor - Sale.discount_minor
                   != func.coalesce(lines.c.lines_minor, 0)).limit(limit)):
        problems.append(f"sale {sid}: total {sub} but lines sum to {lsum}")
    pays = (select(SalePayment.sale_id, func.sum(SalePayment.amount_minor).label("paid"),
                   func.sum(SalePayment.refunded_minor).label("back"))
            .group_by(SalePayment.sale_id).subquery())
    for sid, total, refunded, paid, back in session.execute(
            select(Sale.id, Sale.total_minor, Sale.refunded_minor, pays.c.paid, pays.c.back)
            .join(pays, pays.c.sale_id == Sale.id)
            .where((pays.c.paid != Sale.total_minor) | (pays.c.back != Sale.refunded_minor))
            .limit(limit)):
        problems.append(f"sale {sid}: total {total}/refunded {refunded} but payments "
                        f"{paid}/{back}")
    return problems
