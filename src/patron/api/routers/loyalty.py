"""Points balances and history, adjustments, the programme's rules, tiers and multipliers."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.api.routers.wallet import IDEMPOTENCY
from patron.loyalty import membership, perks
from patron.loyalty import service as loyalty
from patron.loyalty.schemas import (
    MembershipPlanCreate,
    MembershipPlanRead,
    MembershipRead,
    MultiplierCreate,
    PointsAdjust,
    PointsEntryRead,
    PointsRead,
    PointsTransferCreate,
    PointsTransferRead,
    ProgramRead,
    ProgramUpdate,
    TierCreate,
    TierPerks,
    TierRead,
)
from patron.members import service as members

router = APIRouter(tags=["loyalty"])


def _points(session: Session, ctx: Ctx, member_id: uuid.UUID, limit: int = 50) -> PointsRead:
    bal = loyalty.balance(session, clock=ctx.clock, member_id=member_id)
    rows = loyalty.entries(session, member_id=member_id, limit=limit)
    return PointsRead(member_id=member_id, available=bal.available, pending=bal.pending,
                      debt=bal.debt, lifetime_earned=bal.lifetime_earned,
                      entries=[PointsEntryRead.model_validate(e) for e in rows])


@router.get("/members/{member_id}/points", operation_id="get_points")
def get_points(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal,
               member_id: uuid.UUID, limit: int = 50) -> PointsRead:
    members.get_member(session, member_id=member_id)
    return _points(session, ctx, member_id, max(1, min(limit, 500)))


@router.post("/members/{member_id}/points/adjustments", status_code=201,
             operation_id="adjust_points", response_model=PointsRead, openapi_extra=IDEMPOTENCY)
def adjust_points(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                  member_id: uuid.UUID, body: PointsAdjust, raw: RawBody) -> Response:
    """A manager's correction with a reason (audited)."""
    def work(session: Session) -> PointsRead:
        loyalty.adjust(session, clock=ctx.clock, actor=principal, member_id=member_id,
                       points=body.points, reason=body.reason,
                       tz=ctx.settings.default_timezone)
        return _points(session, ctx, member_id, 10)

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/points/transfers", status_code=201,
             operation_id="transfer_points", response_model=PointsTransferRead,
             openapi_extra=IDEMPOTENCY)
def transfer_points(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                    member_id: uuid.UUID, body: PointsTransferCreate, raw: RawBody) -> Response:
    """Give some of the member's available points to another member (family sharing, a
    gift). Like a redemption it is a till call: any staff user or POS key, recorded with
    the caller's store and audited; members belong to the brand, not to a store."""
    def work(session: Session) -> PointsTransferRead:
        done = loyalty.transfer(session, clock=ctx.clock, actor=principal,
                                from_member_id=member_id, to_member_id=body.to_member_id,
                                points=body.points, store_id=body.store_id, note=body.note)
        row = done.transfer
        return PointsTransferRead(
            id=row.id, from_member_id=member_id, to_member_id=body.to_member_id,
            points=row.points, store_id=row.store_id, note=row.note,
            occurred_at=row.occurred_at,
            from_available=done.out_entry.available_after,
            to_available=done.in_entries[-1].available_after)

    return run_once(request, ctx, principal, raw, work)


@router.get("/loyalty/program", operation_id="get_loyalty_program")
def get_program(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal) -> ProgramRead:
    return ProgramRead.model_validate(loyalty.get_program(session, clock=ctx.clock))


@router.patch("/loyalty/program", operation_id="update_loyalty_program")
def update_program(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   body: ProgramUpdate) -> ProgramRead:
    program = loyalty.update_program(session, clock=ctx.clock, actor=principal,
                                     changes=body.model_dump(exclude_none=True))
    session.commit()
    return ProgramRead.model_validate(program)


@router.get("/tiers", operation_id="list_tiers")
def list_tiers(session: DbSession, _principal: CurrentPrincipal) -> list[TierRead]:
    return [TierRead.model_validate(t) for t in loyalty.list_tiers(session)]


@router.post("/tiers", status_code=status.HTTP_201_CREATED, operation_id="create_tier")
def create_tier(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                body: TierCreate) -> TierRead:
    tier = loyalty.create_tier(session, clock=ctx.clock, actor=principal, **body.model_dump())
    session.commit()
    return TierRead.model_validate(tier)


@router.get("/tiers/{tier_id}/perks", operation_id="get_tier_perks")
def get_tier_perks(session: DbSession, _principal: CurrentPrincipal,
                   tier_id: uuid.UUID) -> TierPerks:
    tier = loyalty.get_tier(session, tier_id=tier_id)
    return TierPerks(birthday_coupon_template_id=tier.birthday_coupon_template_id,
                     plan_ids=perks.tier_plan_ids(session, tier_id=tier.id))


@router.put("/tiers/{tier_id}/perks", operation_id="set_tier_perks")
def set_tier_perks(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   tier_id: uuid.UUID, body: TierPerks) -> TierPerks:
    """Replace the tier's birthday coupon and included plan perks (owners)."""
    loyalty.get_tier(session, tier_id=tier_id)  # 404 before the body is judged
    perks.set_tier_perks(session, clock=ctx.clock, actor=principal, tier_id=tier_id,
                         birthday_coupon_template_id=body.birthday_coupon_template_id,
                         plan_ids=body.plan_ids)
    session.commit()
    return get_tier_perks(session, principal, tier_id)


@router.post("/loyalty/multipliers", status_code=status.HTTP_201_CREATED,
             operation_id="create_points_multiplier")
def create_multiplier(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                      body: MultiplierCreate) -> dict[str, str]:
    m = loyalty.add_multiplier(session, clock=ctx.clock, actor=principal, **body.model_dump())
    session.commit()
    return {"id": str(m.id)}


@router.get("/membership-plans", operation_id="list_membership_plans")
def list_plans(session: DbSession, _principal: CurrentPrincipal) -> list[MembershipPlanRead]:
    return [MembershipPlanRead.model_validate(p) for p in membership.list_plans(session)]


@router.post("/membership-plans", status_code=status.HTTP_201_CREATED,
             operation_id="create_membership_plan")
def create_plan(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                body: MembershipPlanCreate) -> MembershipPlanRead:
    """A paid membership sold through a catalogue product (owners)."""
    plan = membership.create_plan(session, clock=ctx.clock, actor=principal, **body.model_dump())
    session.commit()
    return MembershipPlanRead.model_validate(plan)


@router.get("/members/{member_id}/memberships", operation_id="list_member_memberships")
def list_memberships(session: DbSession, _principal: CurrentPrincipal,
                     member_id: uuid.UUID) -> list[MembershipRead]:
    members.get_member(session, member_id=member_id)
    return [MembershipRead.model_validate(m)
            for m in membership.periods(session, member_id=member_id)]
