"""Promotions: definitions for managers and owners, and what each one gave and earned.

Bad definitions are refused with problem+json naming the field the way people know it
(``config.steps.1.spend_minor``, ``limits.total``). A manager sees and changes the
promotions of their own stores (and sees the chain-wide ones); tills may list what runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.offers import promotion_service as promotions
from patron.offers.promotion_models import PromotionRecord
from patron.offers.promotion_schemas import (
    PromotionCreate,
    PromotionRead,
    PromotionReport,
    PromotionUpdate,
    UsageRead,
)
from patron.sales import service as sales

router = APIRouter(prefix="/promotions", tags=["promotions"])


def _reads(session: Session, records: list[PromotionRecord]) -> list[PromotionRead]:
    usage = promotions.usage_of(session, promotion_ids=[r.id for r in records if r.limited])
    out = []
    for r in records:
        u = usage.get(r.id)
        out.append(PromotionRead(
            id=r.id, name=r.name, kind=r.kind, priority=r.priority, exclusive=r.exclusive,
            stackable_with_coupons=r.stackable_with_coupons, schedule=r.schedule,
            audience=r.audience, limits={"per_member": r.per_member_limit,
                                         "total": r.total_limit,
                                         "budget_minor": r.budget_minor},
            config=r.config, active=r.active, version=r.version,
            usage=UsageRead(uses=u.uses, budget_spent_minor=u.budget_spent_minor,
                            budget_left_minor=None if r.budget_minor is None
                            else max(0, r.budget_minor - u.budget_spent_minor))
            if u is not None else None,
            created_by=r.created_by, created_at=r.created_at, updated_at=r.updated_at))
    return out


@router.get("", operation_id="list_promotions")
def list_promotions(session: DbSession, principal: CurrentPrincipal,
                    include_inactive: bool = False) -> list[PromotionRead]:
    """The promotions the caller may see, in priority order."""
    return _reads(session, promotions.list_promotions(session, actor=principal,
                                                      include_inactive=include_inactive))


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_promotion")
def create_promotion(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                     body: PromotionCreate) -> PromotionRead:
    record = promotions.create_promotion(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return _reads(session, [record])[0]


@router.get("/{promotion_id}", operation_id="get_promotion")
def get_promotion(session: DbSession, principal: CurrentPrincipal,
                  promotion_id: uuid.UUID) -> PromotionRead:
    record = promotions.get_promotion(session, actor=principal, promotion_id=promotion_id)
    return _reads(session, [record])[0]


@router.patch("/{promotion_id}", operation_id="update_promotion")
def update_promotion(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                     promotion_id: uuid.UUID, body: PromotionUpdate) -> PromotionRead:
    """Change a promotion; sales already made keep the definition they were priced with."""
    record = promotions.update_promotion(session, clock=ctx.clock, actor=principal,
                                         promotion_id=promotion_id, data=body)
    session.commit()
    return _reads(session, [record])[0]


@router.post("/{promotion_id}/deactivate", operation_id="deactivate_promotion")
def deactivate_promotion(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                         promotion_id: uuid.UUID) -> PromotionRead:
    """Stop a promotion at once; its history and reports stay."""
    record = promotions.set_active(session, clock=ctx.clock, actor=principal,
                                   promotion_id=promotion_id, active=False)
    session.commit()
    return _reads(session, [record])[0]


@router.post("/{promotion_id}/activate", operation_id="activate_promotion")
def activate_promotion(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                       promotion_id: uuid.UUID) -> PromotionRead:
    record = promotions.set_active(session, clock=ctx.clock, actor=principal,
                                   promotion_id=promotion_id, active=True)
    session.commit()
    return _reads(session, [record])[0]


@router.get("/{promotion_id}/report", operation_id="promotion_report")
def promotion_report(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal, promotion_id: uuid.UUID,
    since: Annotated[datetime | None, Query(description="Inclusive; default: creation")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive; default: now")] = None,
) -> PromotionReport:
    """Redemptions, what it cost, incremental sales and cost per retained member."""
    return sales.promotion_report(session, clock=ctx.clock, actor=principal,
                                  promotion_id=promotion_id, since=since, until=until)
