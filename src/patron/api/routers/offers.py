"""Coupons and referrals: templates, issue, look-up, quote, redemption, void, restore,
the referral rule and members' referral codes.

Issuing, redeeming and restoring need an ``Idempotency-Key`` header: a retry returns the
first answer and never redeems twice. A coupon that was already used is refused with 409
``coupon_already_redeemed``; every other reason a coupon cannot be used is a 422 naming
the field ``coupon_codes``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.auth.principal import require_store
from patron.members import service as members
from patron.offers import rules
from patron.offers import service as offers
from patron.offers.enums import CouponKind, CouponScope, CouponSource, CouponStatus, Validity
from patron.offers.models import Coupon, CouponTemplate
from patron.offers.schemas import (
    AttributionRead,
    AttributionRequest,
    CouponQuoteRead,
    CouponRead,
    CouponTemplateCreate,
    CouponTemplateRead,
    CouponTemplateUpdate,
    IssueRequest,
    IssueResult,
    QuoteLineIn,
    QuoteRequest,
    RedemptionRead,
    RedemptionRequest,
    RedemptionResult,
    ReferralCodeRead,
    ReferralRuleIn,
    ReferralRuleRead,
    RestoreRequest,
    RestoreResult,
    VoidRequest,
)

router = APIRouter(tags=["offers"])
IDEMPOTENCY = {"parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                               "schema": {"type": "string", "maxLength": 200}}]}
Code = Annotated[str, Path(max_length=40, description="A coupon code as printed; spaces, "
                                                       "dashes and case are ignored")]


def _template_read(template: CouponTemplate, issued: int) -> CouponTemplateRead:
    return CouponTemplateRead(
        id=template.id, name=template.name, description=template.description,
        kind=CouponKind(template.kind), amount_minor=template.amount_minor,
        percent=template.percent, cap_minor=template.cap_minor,
        min_spend_minor=template.min_spend_minor, scope=CouponScope(template.scope),
        target_ids=offers.target_ids(template), validity=Validity(template.validity),
        starts_at=template.starts_at, ends_at=template.ends_at,
        valid_days=template.valid_days, per_member_limit=template.per_member_limit,
        total_limit=template.total_limit, restore_on_refund=template.restore_on_refund,
        active=template.active, issued_count=issued, created_at=template.created_at,
        updated_at=template.updated_at)


def _coupon_reads(ctx: Ctx, session: Session, coupons: list[Coupon]) -> list[CouponRead]:
    now = ctx.clock.now()
    return [CouponRead(
        id=v.coupon.id, code=v.coupon.code, display_code=rules.format_code(v.coupon.code),
        template_id=v.template.id, template_name=v.template.name,
        member_id=v.coupon.member_id, status=CouponStatus(v.coupon.status),
        usable_now=offers.is_usable(v.coupon, now=now), source=CouponSource(v.coupon.source),
        source_ref=v.coupon.source_ref, issued_at=v.coupon.issued_at,
        issued_by=v.coupon.issued_by, valid_from=v.coupon.valid_from,
        valid_until=v.coupon.valid_until, replaces_coupon_id=v.coupon.replaces_coupon_id,
        voided_at=v.coupon.voided_at, void_reason=v.coupon.void_reason,
        redemption=RedemptionRead.model_validate(v.redemption) if v.redemption else None,
    ) for v in offers.describe(session, coupons=coupons)]


def _lines(lines: list[QuoteLineIn]) -> list[rules.QuoteLine]:
    return [rules.QuoteLine(product_id=x.product_id, category_id=x.category_id,
                            quantity=x.quantity, unit_price_minor=x.unit_price_minor)
            for x in lines]


# ---------------------------------------------------------------- templates


@router.get("/coupon-templates", operation_id="list_coupon_templates")
def list_templates(session: DbSession, _principal: CurrentPrincipal,
                   include_inactive: bool = False) -> list[CouponTemplateRead]:
    counts = offers.issued_counts(session)
    return [_template_read(t, counts.get(t.id, 0))
            for t in offers.list_templates(session, include_inactive=include_inactive)]


@router.post("/coupon-templates", status_code=status.HTTP_201_CREATED,
             operation_id="create_coupon_template")
def create_template(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    body: CouponTemplateCreate) -> CouponTemplateRead:
    template = offers.create_template(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return _template_read(template, 0)


@router.get("/coupon-templates/{template_id}", operation_id="get_coupon_template")
def get_template(session: DbSession, _principal: CurrentPrincipal,
                 template_id: uuid.UUID) -> CouponTemplateRead:
    template = offers.get_template(session, template_id=template_id)
    return _template_read(template, offers.issued_count(session, template_id=template.id))


@router.patch("/coupon-templates/{template_id}", operation_id="update_coupon_template")
def update_template(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    template_id: uuid.UUID, body: CouponTemplateUpdate) -> CouponTemplateRead:
    template = offers.update_template(session, clock=ctx.clock, actor=principal,
                                      template_id=template_id, data=body)
    session.commit()
    return _template_read(template, offers.issued_count(session, template_id=template.id))


@router.delete("/coupon-templates/{template_id}", operation_id="deactivate_coupon_template")
def deactivate_template(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                        template_id: uuid.UUID) -> CouponTemplateRead:
    """Stop issuing from the template; coupons already issued stay usable."""
    template = offers.deactivate_template(session, clock=ctx.clock, actor=principal,
                                          template_id=template_id)
    session.commit()
    return _template_read(template, offers.issued_count(session, template_id=template.id))


@router.post("/coupon-templates/{template_id}/issue", status_code=201,
             operation_id="issue_coupons", response_model=IssueResult,
             openapi_extra=IDEMPOTENCY)
def issue(request: Request, ctx: Ctx, principal: CurrentPrincipal, template_id: uuid.UUID,
          body: IssueRequest, raw: RawBody) -> Response:
    """Issue coupons to a member, or bearer coupons (no member_id), respecting the limits."""
    def work(session: Session) -> IssueResult:
        coupons = offers.issue_coupons(session, clock=ctx.clock, actor=principal,
                                       template_id=template_id, member_id=body.member_id,
                                       count=body.count, source=body.source,
                                       source_ref=body.source_ref)
        return IssueResult(template_id=template_id,
                           coupons=_coupon_reads(ctx, session, coupons))

    return run_once(request, ctx, principal, raw, work)


# ---------------------------------------------------------------- coupons


@router.get("/members/{member_id}/coupons", operation_id="list_member_coupons")
def member_coupons(
    ctx: Ctx, session: DbSession, _principal: CurrentPrincipal, member_id: uuid.UUID,
    coupon_status: Annotated[CouponStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CouponRead]:
    members.get_member(session, member_id=member_id)
    coupons = offers.list_member_coupons(session, member_id=member_id, status=coupon_status,
                                         limit=limit)
    return _coupon_reads(ctx, session, coupons)


@router.get("/coupons/{code}", operation_id="get_coupon")
def get_coupon(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal,
               code: Code) -> CouponRead:
    """A cashier checks a code: whose it is, whether it can be used now, and if not, why."""
    return _coupon_reads(ctx, session, [offers.get_coupon(session, code=code)])[0]


@router.post("/coupons/{code}/quote", operation_id="quote_coupon")
def quote(ctx: Ctx, principal: CurrentPrincipal, code: Code,
          body: QuoteRequest) -> CouponQuoteRead:
    """What the coupon would take off this basket; changes nothing."""
    if body.store_id is not None:
        require_store(principal, body.store_id)
    with ctx.db.read() as session:
        q = offers.quote(session, clock=ctx.clock, code=code, member_id=body.member_id,
                         store_id=body.store_id or principal.default_store_id,
                         lines=_lines(body.lines))
    return CouponQuoteRead(coupon_id=q.coupon_id, code=q.code, label=q.label,
                           eligible_minor=q.eligible_minor, discount_minor=q.discount_minor,
                           line_discounts=list(q.line_discounts))


@router.post("/coupons/{code}/redemptions", status_code=201, operation_id="redeem_coupon",
             response_model=RedemptionResult, openapi_extra=IDEMPOTENCY,
             responses={409: {"description": "coupon_already_redeemed"}})
def redeem(request: Request, ctx: Ctx, principal: CurrentPrincipal, code: Code,
           body: RedemptionRequest, raw: RawBody) -> Response:
    """Use a coupon, for tills that apply coupons themselves; at most once, ever."""
    def work(session: Session) -> RedemptionResult:
        r = offers.redeem(session, clock=ctx.clock, actor=principal, code=code,
                          member_id=body.member_id, store_id=body.store_id, sale_id=None,
                          lines=_lines(body.lines), reference=body.reference)
        return RedemptionResult(coupon_id=r.coupon_id, code=r.code, label=r.label,
                                eligible_minor=r.eligible_minor,
                                discount_minor=r.discount_minor,
                                line_discounts=list(r.line_discounts),
                                redemption=RedemptionRead.model_validate(r.redemption))

    return run_once(request, ctx, principal, raw, work)


@router.post("/coupons/{code}/void", operation_id="void_coupon")
def void(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, code: Code,
         body: VoidRequest) -> CouponRead:
    """A manager withdraws an unused coupon."""
    coupon = offers.void_coupon(session, clock=ctx.clock, actor=principal, code=code,
                                reason=body.reason)
    session.commit()
    return _coupon_reads(ctx, session, [coupon])[0]


@router.post("/coupons/{code}/restorations", status_code=201, operation_id="restore_coupon",
             response_model=RestoreResult, openapi_extra=IDEMPOTENCY)
def restore(request: Request, ctx: Ctx, principal: CurrentPrincipal, code: Code,
            body: RestoreRequest, raw: RawBody) -> Response:
    """A till refunded what the coupon was used on: issue a replacement if the template's
    refund policy says so (the used coupon itself stays used)."""
    def work(session: Session) -> RestoreResult:
        replacements = offers.restore_for_refund(session, clock=ctx.clock, actor=principal,
                                                 code=code, reason=body.reason)
        return RestoreResult(replacements=_coupon_reads(ctx, session, replacements))

    return run_once(request, ctx, principal, raw, work)


# ---------------------------------------------------------------- referrals


@router.get("/referral-rule", operation_id="get_referral_rule")
def get_referral_rule(session: DbSession, _principal: CurrentPrincipal) -> ReferralRuleRead:
    rule = offers.get_referral_rule(session)
    if rule is None:
        return ReferralRuleRead(active=False, updated_at=None)
    return ReferralRuleRead.model_validate(rule)


@router.put("/referral-rule", operation_id="set_referral_rule")
def set_referral_rule(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                      body: ReferralRuleIn) -> ReferralRuleRead:
    rule = offers.set_referral_rule(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return ReferralRuleRead.model_validate(rule)


@router.get("/members/{member_id}/referral-code", operation_id="get_referral_code")
def referral_code(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal,
                  member_id: uuid.UUID) -> ReferralCodeRead:
    """The member's code to share with friends, created on first request."""
    members.get_member(session, member_id=member_id)
    row = offers.find_referral_code(session, member_id=member_id)
    if row is None:
        with ctx.db.write() as writer:
            row = offers.referral_code_for(writer, clock=ctx.clock, member_id=member_id)
    return ReferralCodeRead(member_id=row.member_id, code=row.code, created_at=row.created_at)


@router.put("/members/{member_id}/referrer", operation_id="attribute_referral")
def attribute_referral(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                       member_id: uuid.UUID, body: AttributionRequest) -> AttributionRead:
    """Record who referred a new member, by the referrer's code (before the first purchase)."""
    row = offers.attribute_referral(session, clock=ctx.clock, actor=principal,
                                    new_member_id=member_id, code=body.code)
    session.commit()
    return AttributionRead.model_validate(row)
