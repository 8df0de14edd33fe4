"""Checkout and refunds: the one place that composes members, loyalty and wallet at the till.

Design overview
---------------
Checkout validates the whole basket first (store, member, products, points, wallet,
payment split) and then, in the caller's single transaction, writes the sale, its lines,
discounts and payments, spends wallet and points, earns points (pending until the return
window passes), re-evaluates the tier (upgrades at once) and writes ``sale.completed`` to
the outbox. Any error rolls the whole transaction back, so a refused sale leaves no trace.

Amounts are minor units. Discounts are spread over lines with the largest-remainder rule
(``core.money.allocate``) so lines always add up to the sale. Refunds are computed
*cumulatively*: the amount, points clawed back and the split over payment methods for
"everything refunded so far" is computed from scratch and the previous total subtracted,
so any sequence of partial refunds ends exactly at the original figures, never beyond.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.principal import Principal, require_store
from patron.cards import service as cards
from patron.care.calendar import occasion_dates
from patron.catalog import queries as catalog
from patron.catalog.models import Product
from patron.core.clock import Clock
from patron.core.errors import (
    Conflict,
    InsufficientBalance,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from patron.core.events import emit
from patron.core.memo import memo
from patron.core.money import allocate, minor_digits, proportion
from patron.loyalty import membership
from patron.loyalty import rules as loyalty_rules
from patron.loyalty import service as loyalty
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.models import Member
from patron.offers import service as offers
from patron.sales.models import Refund, RefundLine, Sale, SaleDiscount, SaleLine, SalePayment
from patron.sales.schemas import (
    NextTier,
    Receipt,
    ReceiptDiscount,
    ReceiptLine,
    ReceiptPayment,
    RefundCreate,
    RefundRead,
    SaleCreate,
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
                    amount_minor: int) -> None:
    """Spread a basket-level discount over the lines in proportion to what is left of them."""
    if amount_minor <= 0:
        return
    shares = allocate(amount_minor, [line.net_minor for line in basket.lines])
    for line, share in zip(basket.lines, shares, strict=True):
        line.discount_minor += share
    basket.discounts.append((kind, label, reference, amount_minor))


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


def checkout(session: Session, *, clock: Clock, actor: Principal, till: TillConfig,
             data: SaleCreate) -> Sale:
    """Record a sale with everything it moves; see the module docstring."""
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
    if data.receipt_no and session.scalar(select(Sale.id).where(
            Sale.store_id == store_id, Sale.receipt_no == data.receipt_no)) is not None:
        raise Conflict("This receipt number was already recorded at this store", "receipt_no",
                       code="duplicate_receipt")

    # Coupons first, on the list prices; then the tier discount on what is left.
    if len({c.strip().upper() for c in data.coupon_codes}) != len(data.coupon_codes):
        raise ValidationFailed("The same coupon is given twice", "coupon_codes")
    coupon_lines = [offers.QuoteLine(ln.product_id, ln.category_id, ln.quantity,
                                     ln.unit_price_minor) for ln in basket.lines]
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
        basket.discounts.append(("coupon", q.label, q.code, q.discount_minor))
        quotes.append(q)
    tier = loyalty.member_tier(session, member_id=member.id) if member else None
    if tier is not None and tier.discount_pct:
        _apply_discount(basket, kind="tier", label=f"{tier.name} -{tier.discount_pct}%",
                        reference=tier.code,
                        amount_minor=proportion(basket.subtotal_minor - basket.discount_minor,
                                                tier.discount_pct, 100))
    total = basket.subtotal_minor - basket.discount_minor

    program = loyalty.get_program(session, clock=clock)
    minor_per_major = 10 ** minor_digits(till.currency)
    points_value = 0
    if data.points_to_redeem:
        if member is None:
            raise ValidationFailed("Points need a member", "points_to_redeem")
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
    pay = data.payments
    if pay.wallet_minor:
        if member is None:
            raise ValidationFailed("Stored value needs a member", "payments.wallet_minor")
        have = wallet.balance(session, member_id=member.id).total_minor
        if have < pay.wallet_minor:
            raise InsufficientBalance(f"Stored value is {have}, less than {pay.wallet_minor}",
                                      "payments.wallet_minor")
    paid = pay.cash_minor + pay.card_minor + pay.wallet_minor + points_value
    if paid != total:
        raise ValidationFailed(
            f"Payments add up to {paid} but the sale is {total}", "payments",
            code="payments_mismatch")

    sale = Sale(
        store_id=store.id, member_id=member.id if member else None, cashier_id=actor.user_id,
        receipt_no=data.receipt_no or _receipt_no(store.code, occurred_at, store.timezone),
        source="pos", occurred_at=occurred_at, recorded_at=now,
        subtotal_minor=basket.subtotal_minor, discount_minor=basket.discount_minor,
        total_minor=total, refunded_minor=0, points_earned=0,
        points_redeemed=data.points_to_redeem, tier_id=tier.id if tier else None,
        status="completed",
        lines=[SaleLine(line_no=i + 1, product_id=ln.product_id, quantity=ln.quantity,
                        unit_price_minor=ln.unit_price_minor, discount_minor=ln.discount_minor,
                        total_minor=ln.net_minor, refunded_quantity=0)
               for i, ln in enumerate(basket.lines)],
        discounts=[SaleDiscount(kind=k, label=label, reference=ref, amount_minor=amount)
                   for k, label, ref, amount in basket.discounts],
        payments=[],  # filled below; an initialised collection needs no load for the receipt
    )
    session.add(sale)
    session.flush()
    for q in quotes:
        used = offers.redeem(session, clock=clock, actor=actor, code=q.code,
                             member_id=member.id if member else None, store_id=store.id,
                             sale_id=sale.id, lines=coupon_lines, reference=sale.receipt_no)
        if used.discount_minor != q.discount_minor:  # the coupon changed since the quote
            raise Conflict("The coupon changed while checking out; try again", "coupon_codes")
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
    if data.points_to_redeem and member:
        loyalty.redeem(session, clock=clock, actor=actor, member_id=member.id,
                       points=data.points_to_redeem, sale_id=sale.id, store_id=store.id,
                       reason=sale.receipt_no)
        payments.append(("points", points_value, str(data.points_to_redeem)))
    for method, amount, ref in payments:
        if amount:
            sale.payments.append(SalePayment(method=method, amount_minor=amount,
                                             refunded_minor=0, reference=ref))

    if member is not None and plans:
        bought: dict[uuid.UUID, int] = {}
        for ln in basket.lines:
            if ln.product_id in plans:
                bought[ln.product_id] = bought.get(ln.product_id, 0) + ln.quantity
        membership.start_from_sale(session, clock=clock, member_id=member.id, sale_id=sale.id,
                                   purchases=[membership.Purchase(plans[pid], qty)
                                              for pid, qty in bought.items()])
    if member is not None:
        earn_base = allocate(total - points_value, [ln.net_minor for ln in basket.lines]) \
            if total else [0] * len(basket.lines)
        local = occurred_at.astimezone(ZoneInfo(store.timezone))
        points = loyalty_rules.points_for(
            [loyalty_rules.EarnLine(base, ln.product_id, ln.category_id)
             for base, ln in zip(earn_base, basket.lines, strict=True)],
            points_per_major=program.points_per_major, minor_per_major=minor_per_major,
            multipliers=loyalty.multipliers(session),
            tier_pct=tier.points_multiplier_pct if tier else 100,
            birthday_pct=program.birthday_multiplier_pct
            if _is_birthday_month(member, local.month, local.year) else None,
            now=occurred_at, rounding=loyalty.rounding(program))
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
                                     "points_earned": sale.points_earned})
    return sale


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
                           refunded_quantity=ln.refunded_quantity) for ln in sale.lines],
        subtotal_minor=sale.subtotal_minor,
        discounts=[ReceiptDiscount(kind=d.kind, label=d.label, amount_minor=d.amount_minor)
                   for d in sale.discounts],
        discount_minor=sale.discount_minor, total_minor=sale.total_minor,
        refunded_minor=sale.refunded_minor,
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

    refund_lines = []
    amount = 0
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


def refund_read(session: Session, *, clock: Clock, outcome: RefundOutcome,
                currency: str) -> RefundRead:
    refund_row, sale = outcome.refund, outcome.sale
    return RefundRead(refund_id=refund_row.id, sale_id=sale.id,
                      amount_minor=refund_row.amount_minor,
                      returned=outcome.returned, points_clawed_back=refund_row.points_clawed_back,
                      points_debt=refund_row.points_debt,
                      points_returned=refund_row.points_returned,
                      wallet_returned_minor=refund_row.wallet_returned_minor,
                      sale=receipt(session, clock=clock, sale=sale, currency=currency))


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
