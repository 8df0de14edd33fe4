"""Stored value: balance and history, top-ups, spends, cash-outs, adjustments, bonus rules.

Value-moving calls need an ``Idempotency-Key`` header; a retry returns the first answer.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.members import service as members
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from patron.wallet.models import WalletEntry
from patron.wallet.schemas import (
    AdjustRequest,
    BonusRuleIn,
    BonusRuleRead,
    SpendRequest,
    TopUpRequest,
    WalletEntryRead,
    WalletMovement,
    WalletRead,
)

router = APIRouter(tags=["wallet"])
IDEMPOTENCY = {"parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                               "schema": {"type": "string", "maxLength": 200}}]}


def _movement(session: Session, entry: WalletEntry, member_id: uuid.UUID) -> WalletMovement:
    bal = wallet.balance(session, member_id=member_id)
    return WalletMovement(entry=WalletEntryRead.model_validate(entry),
                          principal_minor=bal.principal_minor, bonus_minor=bal.bonus_minor,
                          balance_minor=bal.total_minor)


@router.get("/members/{member_id}/wallet", operation_id="get_wallet")
def get_wallet(session: DbSession, _principal: CurrentPrincipal, member_id: uuid.UUID,
               limit: int = 50) -> WalletRead:
    members.get_member(session, member_id=member_id)
    bal = wallet.balance(session, member_id=member_id)
    rows = wallet.entries(session, member_id=member_id, limit=max(1, min(limit, 500)))
    return WalletRead(member_id=member_id, principal_minor=bal.principal_minor,
                      bonus_minor=bal.bonus_minor, balance_minor=bal.total_minor,
                      entries=[WalletEntryRead.model_validate(e) for e in rows])


@router.post("/members/{member_id}/wallet/top-ups", status_code=201,
             operation_id="top_up_wallet", response_model=WalletMovement,
             openapi_extra=IDEMPOTENCY)
def top_up(request: Request, ctx: Ctx, principal: CurrentPrincipal, member_id: uuid.UUID,
           body: TopUpRequest, raw: RawBody) -> Response:
    def work(session: Session) -> WalletMovement:
        entry = wallet.top_up(session, clock=ctx.clock, actor=principal, member_id=member_id,
                              amount_minor=body.amount_minor, store_id=body.store_id,
                              reason=body.reason)
        return _movement(session, entry, member_id)

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/wallet/spends", status_code=201, operation_id="spend_wallet",
             response_model=WalletMovement, openapi_extra=IDEMPOTENCY)
def spend(request: Request, ctx: Ctx, principal: CurrentPrincipal, member_id: uuid.UUID,
          body: SpendRequest, raw: RawBody) -> Response:
    def work(session: Session) -> WalletMovement:
        entry = wallet.spend(session, clock=ctx.clock, actor=principal, member_id=member_id,
                             amount_minor=body.amount_minor, store_id=body.store_id,
                             order=SpendOrder(ctx.settings.wallet_spend_order),
                             reason=body.reason)
        return _movement(session, entry, member_id)

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/wallet/cash-outs", status_code=201,
             operation_id="cash_out_wallet", response_model=WalletMovement,
             openapi_extra=IDEMPOTENCY)
def cash_out(request: Request, ctx: Ctx, principal: CurrentPrincipal, member_id: uuid.UUID,
             body: SpendRequest, raw: RawBody) -> Response:
    """Return paid-in principal to the customer (managers); bonus is never paid out."""
    def work(session: Session) -> WalletMovement:
        entry = wallet.cash_out(session, clock=ctx.clock, actor=principal, member_id=member_id,
                                amount_minor=body.amount_minor, store_id=body.store_id,
                                reason=body.reason)
        return _movement(session, entry, member_id)

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/wallet/adjustments", status_code=201,
             operation_id="adjust_wallet", response_model=WalletMovement,
             openapi_extra=IDEMPOTENCY)
def adjust(request: Request, ctx: Ctx, principal: CurrentPrincipal, member_id: uuid.UUID,
           body: AdjustRequest, raw: RawBody) -> Response:
    def work(session: Session) -> WalletMovement:
        entry = wallet.adjust(session, clock=ctx.clock, actor=principal, member_id=member_id,
                              principal_delta_minor=body.principal_delta_minor,
                              bonus_delta_minor=body.bonus_delta_minor, reason=body.reason)
        return _movement(session, entry, member_id)

    return run_once(request, ctx, principal, raw, work)


@router.get("/wallet/bonus-rules", operation_id="list_wallet_bonus_rules")
def list_bonus_rules(session: DbSession, _principal: CurrentPrincipal) -> list[BonusRuleRead]:
    return [BonusRuleRead.model_validate(r) for r in wallet.list_bonus_rules(session)]


@router.post("/wallet/bonus-rules", status_code=status.HTTP_201_CREATED,
             operation_id="create_wallet_bonus_rule")
def create_bonus_rule(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                      body: BonusRuleIn) -> BonusRuleRead:
    rule = wallet.create_bonus_rule(session, clock=ctx.clock, actor=principal,
                                    **body.model_dump())
    session.commit()
    return BonusRuleRead.model_validate(rule)
