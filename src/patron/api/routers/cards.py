"""Stamp cards, visit packages and gift cards.

Value-moving calls (redeeming a reward, selling a package, using a visit, refunding a
package, issuing, redeeming, transferring and voiding gift cards) need an
``Idempotency-Key`` header: a retry returns the first answer and moves nothing twice.

Gift-card calls that need the PIN take it in the ``X-Gift-Card-PIN`` header (never in a
URL, so it stays out of access logs). The attempt is recorded in a transaction of its own
before the work runs, so wrong PINs are counted although their request fails: the 5th in
a row locks the card for 15 minutes (429 ``gift_card_locked``).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Request, Response, status
from sqlalchemy.orm import Session

from patron.api.deps import AppContext, Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.cards import rules
from patron.cards import service as cards
from patron.cards.enums import (
    GiftCardStatus,
    PackageStatus,
    RewardKind,
    StampBasis,
)
from patron.cards.models import GiftCard, MemberPackage, PackageProduct, StampProgramme
from patron.cards.schemas import (
    GiftCardBatchRead,
    GiftCardEntryRead,
    GiftCardIssueRequest,
    GiftCardMovement,
    GiftCardRead,
    GiftCardRedeemRequest,
    GiftCardTransferRead,
    GiftCardTransferRequest,
    GiftCardVoidRequest,
    IssuedGiftCard,
    MemberPackageRead,
    PackageProductCreate,
    PackageProductRead,
    PackageProductUpdate,
    PackageRefundRead,
    PackageRefundRequest,
    RewardRedeemRequest,
    RewardRedemptionRead,
    SellPackageRequest,
    StampCardRead,
    StampProgrammeCreate,
    StampProgrammeRead,
    StampProgrammeUpdate,
    StampRewardRead,
    UseVisitRequest,
    VisitEntryRead,
    VisitUsed,
)
from patron.core.errors import ValidationFailed
from patron.members import service as members

router = APIRouter(tags=["cards"])
IDEMPOTENCY = {"parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                               "schema": {"type": "string", "maxLength": 200}}]}
PIN_HEADER = "X-Gift-Card-PIN"
Code = Annotated[str, Path(max_length=40, description="A gift-card code as printed; spaces, "
                                                       "dashes and case are ignored")]
Pin = Annotated[str | None, Header(alias=PIN_HEADER, max_length=40,
                                   description="The card's PIN")]


# ---------------------------------------------------------------- stamp programmes


def _programme_read(p: StampProgramme) -> StampProgrammeRead:
    targets = cards.programme_targets(p)
    return StampProgrammeRead(
        id=p.id, name=p.name, basis=StampBasis(p.basis), stamps_needed=p.stamps_needed,
        reward_kind=RewardKind(p.reward_kind), reward_product_id=p.reward_product_id,
        valid_days=p.valid_days, product_ids=sorted(targets.product_ids),
        category_ids=sorted(targets.category_ids), active=p.active, created_at=p.created_at,
        updated_at=p.updated_at)


@router.get("/stamp-programmes", operation_id="list_stamp_programmes")
def list_programmes(session: DbSession, _principal: CurrentPrincipal,
                    include_inactive: bool = False) -> list[StampProgrammeRead]:
    return [_programme_read(p)
            for p in cards.list_programmes(session, include_inactive=include_inactive)]


@router.post("/stamp-programmes", status_code=status.HTTP_201_CREATED,
             operation_id="create_stamp_programme")
def create_programme(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                     body: StampProgrammeCreate) -> StampProgrammeRead:
    programme = cards.create_programme(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return _programme_read(programme)


@router.get("/stamp-programmes/{programme_id}", operation_id="get_stamp_programme")
def get_programme(session: DbSession, _principal: CurrentPrincipal,
                  programme_id: uuid.UUID) -> StampProgrammeRead:
    return _programme_read(cards.get_programme(session, programme_id=programme_id))


@router.patch("/stamp-programmes/{programme_id}", operation_id="update_stamp_programme")
def update_programme(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                     programme_id: uuid.UUID, body: StampProgrammeUpdate) -> StampProgrammeRead:
    programme = cards.update_programme(session, clock=ctx.clock, actor=principal,
                                       programme_id=programme_id, data=body)
    session.commit()
    return _programme_read(programme)


@router.delete("/stamp-programmes/{programme_id}", operation_id="deactivate_stamp_programme")
def deactivate_programme(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                         programme_id: uuid.UUID) -> StampProgrammeRead:
    """Stop giving stamps; cards and rewards already earned stay."""
    programme = cards.update_programme(session, clock=ctx.clock, actor=principal,
                                       programme_id=programme_id,
                                       data=StampProgrammeUpdate(active=False))
    session.commit()
    return _programme_read(programme)


# ---------------------------------------------------------------- stamp cards


@router.get("/members/{member_id}/stamp-cards", operation_id="list_member_stamp_cards")
def member_stamp_cards(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal,
                       member_id: uuid.UUID) -> list[StampCardRead]:
    members.get_member(session, member_id=member_id)
    return [StampCardRead(
        id=v.card.id, programme_id=v.programme.id, programme_name=v.programme.name,
        stamps=v.card.stamps, stamps_needed=v.programme.stamps_needed, debt=v.card.debt,
        rewards=[StampRewardRead.model_validate(r) for r in v.rewards])
        for v in cards.member_stamp_cards(session, clock=ctx.clock, member_id=member_id)]


@router.post("/members/{member_id}/stamp-rewards/{reward_id}/redeem", status_code=201,
             operation_id="redeem_stamp_reward", response_model=RewardRedemptionRead,
             openapi_extra=IDEMPOTENCY,
             responses={409: {"description": "reward_already_redeemed"}})
def redeem_reward(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                  member_id: uuid.UUID, reward_id: uuid.UUID, raw: RawBody,
                  body: Annotated[RewardRedeemRequest | None, Body()] = None) -> Response:
    """Use a reward: give the free product, or take 100 % off one qualifying item."""
    data = body or RewardRedeemRequest()

    def work(session: Session) -> RewardRedemptionRead:
        done = cards.redeem_stamp_reward(session, clock=ctx.clock, actor=principal,
                                         member_id=member_id, reward_id=reward_id,
                                         store_id=data.store_id, reference=data.reference)
        targets = cards.programme_targets(done.programme)
        return RewardRedemptionRead(
            reward=StampRewardRead.model_validate(done.reward),
            reward_kind=RewardKind(done.programme.reward_kind),
            reward_product_id=done.programme.reward_product_id,
            product_ids=sorted(targets.product_ids), category_ids=sorted(targets.category_ids))

    return run_once(request, ctx, principal, raw, work)


# ---------------------------------------------------------------- package products


def _product_read(p: PackageProduct) -> PackageProductRead:
    return PackageProductRead(id=p.id, name=p.name, visits=p.visits, price_minor=p.price_minor,
                              valid_days=p.valid_days, service_ids=cards.service_ids(p),
                              active=p.active, created_at=p.created_at,
                              updated_at=p.updated_at)


@router.get("/package-products", operation_id="list_package_products")
def list_package_products(session: DbSession, _principal: CurrentPrincipal,
                          include_inactive: bool = False) -> list[PackageProductRead]:
    return [_product_read(p) for p in cards.list_package_products(
        session, include_inactive=include_inactive)]


@router.post("/package-products", status_code=status.HTTP_201_CREATED,
             operation_id="create_package_product")
def create_package_product(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                           body: PackageProductCreate) -> PackageProductRead:
    product = cards.create_package_product(session, clock=ctx.clock, actor=principal,
                                           data=body)
    session.commit()
    return _product_read(product)


@router.get("/package-products/{package_product_id}", operation_id="get_package_product")
def get_package_product(session: DbSession, _principal: CurrentPrincipal,
                        package_product_id: uuid.UUID) -> PackageProductRead:
    return _product_read(cards.get_package_product(session,
                                                   package_product_id=package_product_id))


@router.patch("/package-products/{package_product_id}", operation_id="update_package_product")
def update_package_product(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                           package_product_id: uuid.UUID,
                           body: PackageProductUpdate) -> PackageProductRead:
    product = cards.update_package_product(session, clock=ctx.clock, actor=principal,
                                           package_product_id=package_product_id, data=body)
    session.commit()
    return _product_read(product)


@router.delete("/package-products/{package_product_id}",
               operation_id="deactivate_package_product")
def deactivate_package_product(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                               package_product_id: uuid.UUID) -> PackageProductRead:
    """Stop selling the package; packages already sold stay usable."""
    product = cards.update_package_product(session, clock=ctx.clock, actor=principal,
                                           package_product_id=package_product_id,
                                           data=PackageProductUpdate(active=False))
    session.commit()
    return _product_read(product)


# ---------------------------------------------------------------- member packages


def _package_reads(ctx: AppContext, session: Session,
                   packages: list[MemberPackage]) -> list[MemberPackageRead]:
    services = cards.package_service_ids(session, packages=packages)
    now = ctx.clock.now()
    return [MemberPackageRead(
        id=p.id, member_id=p.member_id, package_product_id=p.package_product_id, name=p.name,
        visits_total=p.visits_total, visits_left=p.visits_left, price_minor=p.price_minor,
        status=PackageStatus(p.status), usable_now=cards.is_usable(p, now=now),
        sold_at=p.sold_at, expires_at=p.expires_at, store_id=p.store_id,
        service_ids=services[p.id], refunded_minor=p.refunded_minor) for p in packages]


@router.get("/members/{member_id}/packages", operation_id="list_member_packages")
def member_packages(ctx: Ctx, session: DbSession, _principal: CurrentPrincipal,
                    member_id: uuid.UUID, include_closed: bool = True
                    ) -> list[MemberPackageRead]:
    members.get_member(session, member_id=member_id)
    return _package_reads(ctx, session, cards.list_member_packages(
        session, member_id=member_id, include_closed=include_closed))


@router.post("/members/{member_id}/packages", status_code=201, operation_id="sell_package",
             response_model=MemberPackageRead, openapi_extra=IDEMPOTENCY)
def sell_package(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                 member_id: uuid.UUID, body: SellPackageRequest, raw: RawBody) -> Response:
    """Sell a package of visits to a member (for tills that take the payment themselves)."""
    def work(session: Session) -> MemberPackageRead:
        package = cards.sell_package(session, clock=ctx.clock, actor=principal,
                                     member_id=member_id,
                                     package_product_id=body.package_product_id,
                                     store_id=body.store_id, price_minor=body.price_minor)
        return _package_reads(ctx, session, [package])[0]

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/packages/{package_id}/visits", status_code=201,
             operation_id="use_package_visit", response_model=VisitUsed,
             openapi_extra=IDEMPOTENCY)
def use_visit(request: Request, ctx: Ctx, principal: CurrentPrincipal, member_id: uuid.UUID,
              package_id: uuid.UUID, raw: RawBody,
              body: Annotated[UseVisitRequest | None, Body()] = None) -> Response:
    """Take one visit; 422 on ``package_id`` when none are left or the package expired."""
    data = body or UseVisitRequest()

    def work(session: Session) -> VisitUsed:
        entry = cards.use_visit(session, clock=ctx.clock, actor=principal,
                                member_id=member_id, package_id=package_id,
                                product_id=data.product_id, store_id=data.store_id,
                                reference=data.reference)
        package = session.get(MemberPackage, package_id)
        assert package is not None
        return VisitUsed(package=_package_reads(ctx, session, [package])[0],
                         entry=VisitEntryRead.model_validate(entry))

    return run_once(request, ctx, principal, raw, work)


@router.post("/members/{member_id}/packages/{package_id}/refund", status_code=201,
             operation_id="refund_package", response_model=PackageRefundRead,
             openapi_extra=IDEMPOTENCY)
def refund_package(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                   member_id: uuid.UUID, package_id: uuid.UUID, raw: RawBody,
                   body: Annotated[PackageRefundRequest | None, Body()] = None) -> Response:
    """Close a package (managers); answers the minor units due for its unused visits."""
    require_role(principal, Role.MANAGER, users_only=True)
    data = body or PackageRefundRequest()

    def work(session: Session) -> PackageRefundRead:
        done = cards.refund_package(session, clock=ctx.clock, actor=principal,
                                    member_id=member_id, package_id=package_id,
                                    reason=data.reason)
        return PackageRefundRead(package=_package_reads(ctx, session, [done.package])[0],
                                 refund_minor=done.refund_minor,
                                 visits_refunded=done.visits_refunded)

    return run_once(request, ctx, principal, raw, work)


# ---------------------------------------------------------------- gift cards


def _card_read(ctx: AppContext, card: GiftCard) -> GiftCardRead:
    return GiftCardRead(
        id=card.id, code=card.code, display_code=rules.format_code(card.code),
        status=GiftCardStatus(card.status),
        usable_now=cards.is_spendable(card, now=ctx.clock.now()),
        balance_minor=card.balance_minor, face_value_minor=card.face_value_minor,
        member_id=card.member_id, issued_at=card.issued_at, expires_at=card.expires_at)


def _issued(issued: cards.IssuedCard) -> IssuedGiftCard:
    card = issued.card
    return IssuedGiftCard(id=card.id, code=card.code, display_code=rules.format_code(card.code),
                          pin=issued.pin, balance_minor=card.balance_minor,
                          expires_at=card.expires_at)


def _pin_gate(ctx: AppContext, code: str, pin: str | None) -> str:
    """Record the PIN attempt in a transaction of its own, then refuse a wrong one."""
    if not pin:
        raise ValidationFailed(f"Send the card's PIN in the {PIN_HEADER} header", PIN_HEADER,
                               code="pin_required")
    with ctx.db.write() as session:
        check = cards.check_pin(session, clock=ctx.clock, code=code, pin=pin)
    check.raise_for_failure()
    return pin


@router.post("/gift-cards", status_code=201, operation_id="issue_gift_cards",
             response_model=GiftCardBatchRead, openapi_extra=IDEMPOTENCY)
def issue_gift_cards(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                     body: GiftCardIssueRequest, raw: RawBody) -> Response:
    """Issue a batch of cards (managers). The answer holds every code with its PIN: the
    only time the PINs are shown (a retry with the same key shows the same answer)."""
    def work(session: Session) -> GiftCardBatchRead:
        batch, issued = cards.issue_gift_cards(
            session, clock=ctx.clock, actor=principal, name=body.name, count=body.count,
            face_value_minor=body.face_value_minor, valid_days=body.valid_days,
            store_id=body.store_id)
        return GiftCardBatchRead(batch_id=batch.id, name=batch.name,
                                 face_value_minor=batch.face_value_minor, count=batch.count,
                                 expires_at=batch.expires_at,
                                 cards=[_issued(i) for i in issued])

    return run_once(request, ctx, principal, raw, work)


@router.get("/gift-cards/{code}", operation_id="get_gift_card")
def get_gift_card(ctx: Ctx, _principal: CurrentPrincipal, code: Code,
                  pin: Pin = None) -> GiftCardRead:
    """Balance and status, for whoever holds the code and the PIN."""
    checked = _pin_gate(ctx, code, pin)
    with ctx.db.read() as session:
        card = cards.gift_card_balance(session, clock=ctx.clock, code=code, pin=checked)
        return _card_read(ctx, card)


@router.post("/gift-cards/{code}/redemptions", status_code=201,
             operation_id="redeem_gift_card", response_model=GiftCardMovement,
             openapi_extra=IDEMPOTENCY)
def redeem_gift_card(request: Request, ctx: Ctx, principal: CurrentPrincipal, code: Code,
                     body: GiftCardRedeemRequest, raw: RawBody,
                     pin: Pin = None) -> Response:
    """Pay with the card, partly or wholly; 422 ``insufficient_balance`` beyond it."""
    checked = _pin_gate(ctx, code, pin)

    def work(session: Session) -> GiftCardMovement:
        entry = cards.redeem_gift_card(session, clock=ctx.clock, actor=principal, code=code,
                                       pin=checked, amount_minor=body.amount_minor,
                                       store_id=body.store_id, reference=body.reference)
        card = session.get(GiftCard, entry.card_id)
        assert card is not None
        return GiftCardMovement(card=_card_read(ctx, card),
                                entry=GiftCardEntryRead.model_validate(entry))

    return run_once(request, ctx, principal, raw, work)


@router.post("/gift-cards/{code}/transfer", status_code=201, operation_id="transfer_gift_card",
             response_model=GiftCardTransferRead, openapi_extra=IDEMPOTENCY)
def transfer_gift_card(request: Request, ctx: Ctx, principal: CurrentPrincipal, code: Code,
                       raw: RawBody, pin: Pin = None,
                       body: Annotated[GiftCardTransferRequest | None, Body()] = None
                       ) -> Response:
    """Move the balance to a new code and PIN (the old card closes), or attach the card to
    a member (``member_id``)."""
    checked = _pin_gate(ctx, code, pin)
    data = body or GiftCardTransferRequest()

    def work(session: Session) -> GiftCardTransferRead:
        moved = cards.transfer_gift_card(session, clock=ctx.clock, actor=principal,
                                         code=code, pin=checked, to_member_id=data.member_id)
        return GiftCardTransferRead(
            card=_card_read(ctx, moved.card),
            new_card=_issued(moved.new_card) if moved.new_card else None)

    return run_once(request, ctx, principal, raw, work)


@router.post("/gift-cards/{code}/void", status_code=201, operation_id="void_gift_card",
             response_model=GiftCardRead, openapi_extra=IDEMPOTENCY)
def void_gift_card(request: Request, ctx: Ctx, principal: CurrentPrincipal, code: Code,
                   body: GiftCardVoidRequest, raw: RawBody) -> Response:
    """A manager withdraws a card and its balance."""
    def work(session: Session) -> GiftCardRead:
        card = cards.void_gift_card(session, clock=ctx.clock, actor=principal, code=code,
                                    reason=body.reason)
        return _card_read(ctx, card)

    return run_once(request, ctx, principal, raw, work)

