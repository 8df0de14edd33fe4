"""Checkout, quotes and refunds at the till. Checkout and refunds need an
``Idempotency-Key``: a till that timed out re-sends the same key and gets the first receipt
back, nothing booked twice. A quote writes nothing and needs no key."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from patron.api.deps import AppContext, Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.api.routers.wallet import IDEMPOTENCY
from patron.cards import service as cards
from patron.sales import service as sales
from patron.sales.schemas import Receipt, RefundCreate, RefundRead, SaleCreate, SaleQuote
from patron.wallet.enums import SpendOrder

router = APIRouter(prefix="/sales", tags=["sales"])


def till_config(ctx: AppContext) -> sales.TillConfig:
    s = ctx.settings
    return sales.TillConfig(currency=s.currency, region=s.default_region,
                            timezone=s.default_timezone,
                            spend_order=SpendOrder(s.wallet_spend_order))


@router.post("", status_code=201, operation_id="create_sale", response_model=Receipt,
             openapi_extra=IDEMPOTENCY)
def create_sale(request: Request, ctx: Ctx, principal: CurrentPrincipal, body: SaleCreate,
                raw: RawBody) -> Response:
    """Check out a basket; returns the receipt (totals, points, balances, tier progress).

    Gift-card PINs are checked first, each in a transaction of its own, so a wrong PIN
    counts towards the card's lock although the sale is refused."""
    for index, gift in enumerate(body.payments.gift_cards):
        with sales.nested_field(f"payments.gift_cards.{index}"):
            with ctx.db.write() as session:
                check = cards.check_pin(session, clock=ctx.clock, code=gift.code, pin=gift.pin)
            check.raise_for_failure()

    def work(session: Session) -> Receipt:
        sale = sales.checkout(session, clock=ctx.clock, actor=principal,
                              till=till_config(ctx), data=body)
        return sales.receipt(session, clock=ctx.clock, sale=sale,
                             currency=ctx.settings.currency)

    return run_once(request, ctx, principal, raw, work)


@router.post("/quote", operation_id="quote_sale")
def quote_sale(ctx: Ctx, principal: CurrentPrincipal, body: SaleCreate) -> SaleQuote:
    """Price a basket as checkout would now: promotions with their savings, coupons, the
    tier discount, the total to pay, cashback, and the promotions it almost reaches.
    Writes and reserves nothing (payments may be left out)."""
    with ctx.db.read() as session:
        return sales.quote(session, clock=ctx.clock, actor=principal, till=till_config(ctx),
                           data=body)


@router.get("/{sale_id}", operation_id="get_sale")
def get_sale(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
             sale_id: uuid.UUID) -> Receipt:
    sale = sales.get_sale(session, actor=principal, sale_id=sale_id)
    return sales.receipt(session, clock=ctx.clock, sale=sale, currency=ctx.settings.currency)


@router.post("/{sale_id}/refunds", status_code=201, operation_id="refund_sale",
             response_model=RefundRead, openapi_extra=IDEMPOTENCY)
def refund_sale(request: Request, ctx: Ctx, principal: CurrentPrincipal, sale_id: uuid.UUID,
                body: RefundCreate, raw: RawBody) -> Response:
    """Refund all of a sale, or some lines or quantities; points and wallet follow."""
    def work(session: Session) -> RefundRead:
        outcome = sales.refund(session, clock=ctx.clock, actor=principal,
                               till=till_config(ctx), sale_id=sale_id, data=body)
        return sales.refund_read(session, clock=ctx.clock, outcome=outcome,
                                 currency=ctx.settings.currency)

    return run_once(request, ctx, principal, raw, work)
