"""Use cases of coupons and referrals: templates, issue, quote, redeem, void, expire,
restore on refund, referral codes and first-purchase rewards.

Design overview (redemption)
----------------------------
A coupon is redeemed at most once, ever. ``redeem`` runs lock -> check -> write inside the
caller's transaction: it locks the coupon row (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite the caller's ``BEGIN IMMEDIATE`` transaction already holds the database's write
lock), checks status, window, owner, limits and basket, then inserts the
``CouponRedemption`` and marks the coupon ``redeemed``. Two tills racing for one code
queue on the lock; the second one sees ``redeemed`` and is refused with
``coupon_already_redeemed`` (409 in the API). Behind the lock stands
``UNIQUE(coupon_redemptions.coupon_id)``: should the lock ever be missing, the second
insert fails and its request fails loudly (500) rather than give the discount twice. That
constraint is deliberately not turned into a friendly 409 here, so that a broken lock is
visible (tests/offers/test_concurrency.py shows it).

Refunds (``restore_for_refund``). "Redeemed at most once, ever" and "a refund gives the
coupon back" are reconciled by never un-redeeming: the original coupon stays
``redeemed`` with its redemption row untouched, and, if the template's
``restore_on_refund`` is set, a *replacement* coupon with a new code, the same template,
owner and validity window is issued (``source='restore'``, ``replaces_coupon_id`` ->
original) and a ``CouponRestoration`` row links redemption, refund and replacement.
``UNIQUE(coupon_restorations.redemption_id)`` makes the restoration happen at most once. A
coupon whose window has already closed is not restored (the customer could not have used
it any more). Replacements do not count against the template's issue limits.

Limits. ``total_limit`` and ``per_member_limit`` count coupons issued from the template
(replacements excluded) and are checked with the template row locked, so concurrent issues
cannot exceed them. For a bearer coupon, ``per_member_limit`` also caps how many coupons of
the template one member may redeem (checked with the template row locked, too).

Referrals. Every member can have one referral code (created on demand). A referred
member's first purchase decides the referral once: ``referral_rewards`` is UNIQUE per
referred member, and the row is inserted *before* the reward coupons are issued, so two
concurrent first purchases reward at most once.

Lock order: coupon rows (by id), then template rows. Services flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, PatronError, ValidationFailed
from patron.core.events import emit
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.offers import rules
from patron.offers.enums import (
    CouponKind,
    CouponScope,
    CouponSource,
    CouponStatus,
    ReferralOutcome,
    Validity,
)
from patron.offers.models import (
    Coupon,
    CouponRedemption,
    CouponRestoration,
    CouponTemplate,
    CouponTemplateTarget,
    ReferralAttribution,
    ReferralCode,
    ReferralReward,
    ReferralRule,
)
from patron.offers.rules import QuoteLine as QuoteLine  # the checkout builds these
from patron.offers.rules import Refusal
from patron.offers.schemas import CouponTemplateCreate, CouponTemplateUpdate, ReferralRuleIn

if TYPE_CHECKING:
    from patron.members.models import Member  # returned by the members service

FIELD = "coupon_codes"  # the field a checkout's coupon problems are reported on
MAX_ISSUE = 1_000
_T = TypeVar("_T")


def for_update(stmt: Select[_T]) -> Select[_T]:
    """Row lock on PostgreSQL (ignored by SQLite, whose write transaction locks the file).

    A module-level function so the concurrency tests can take the lock away and show
    that they then catch the double redemption.
    """
    # populate_existing: the row as locked, even if this session read it before
    # (an object in the identity map keeps its old values otherwise, and a write based
    # on them loses whatever committed between the read and the lock)
    return stmt.with_for_update().execution_options(populate_existing=True)


# ---------------------------------------------------------------- templates

TERMS_FIELDS = ("kind", "amount_minor", "percent", "cap_minor", "min_spend_minor", "scope",
                "target_ids")


def _check_template(values: dict[str, Any]) -> None:
    """Refuse impossible combinations, naming the field to fix (the CHECKs agree)."""
    kind, scope, validity = values["kind"], values["scope"], values["validity"]
    if kind is CouponKind.FIXED:
        if values["amount_minor"] is None:
            raise ValidationFailed("A fixed coupon needs amount_minor", "amount_minor",
                                   code="required")
        for name in ("percent", "cap_minor"):
            if values[name] is not None:
                raise ValidationFailed(f"{name} is for percent coupons", name)
    else:
        if values["percent"] is None:
            raise ValidationFailed("A percent coupon needs percent (1-100)", "percent",
                                   code="required")
        if values["amount_minor"] is not None:
            raise ValidationFailed("amount_minor is for fixed coupons", "amount_minor")
    targets = values["target_ids"]
    if scope is CouponScope.ALL and targets:
        raise ValidationFailed("A coupon for everything takes no target_ids", "target_ids")
    if scope is not CouponScope.ALL and not targets:
        raise ValidationFailed(f"Name the {scope.value} the coupon applies to", "target_ids",
                               code="required")
    if len(set(targets)) != len(targets):
        raise ValidationFailed("target_ids has duplicates", "target_ids")
    starts_at, ends_at, days = values["starts_at"], values["ends_at"], values["valid_days"]
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("Give a time zone (e.g. 2026-12-01T00:00:00+08:00)", name)
    if validity is Validity.FIXED:
        if ends_at is None:
            raise ValidationFailed("A fixed window needs ends_at", "ends_at", code="required")
        if starts_at is not None and starts_at >= ends_at:
            raise ValidationFailed("The window must end after it starts", "ends_at")
        if days is not None:
            raise ValidationFailed("valid_days is for 'days' validity", "valid_days")
    else:
        if days is None:
            raise ValidationFailed("Say for how many days a coupon is valid", "valid_days",
                                   code="required")
        for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
            if value is not None:
                raise ValidationFailed(f"{name} is for 'fixed' validity", name)


def _template_values(template: CouponTemplate) -> dict[str, Any]:
    return {
        "name": template.name, "description": template.description,
        "kind": CouponKind(template.kind), "amount_minor": template.amount_minor,
        "percent": template.percent, "cap_minor": template.cap_minor,
        "min_spend_minor": template.min_spend_minor, "scope": CouponScope(template.scope),
        "target_ids": target_ids(template), "validity": Validity(template.validity),
        "starts_at": template.starts_at, "ends_at": template.ends_at,
        "valid_days": template.valid_days, "per_member_limit": template.per_member_limit,
        "total_limit": template.total_limit, "restore_on_refund": template.restore_on_refund,
        "active": template.active,
    }


def target_ids(template: CouponTemplate) -> list[uuid.UUID]:
    ids = [t.category_id or t.product_id for t in template.targets]
    return sorted(i for i in ids if i is not None)


def _targets(scope: CouponScope, ids: list[uuid.UUID]) -> list[CouponTemplateTarget]:
    return [CouponTemplateTarget(category_id=i if scope is CouponScope.CATEGORIES else None,
                                 product_id=i if scope is CouponScope.PRODUCTS else None)
            for i in ids]


def _flush_targets(session: Session, scope: CouponScope) -> None:
    """Flush in a savepoint: an unknown category or product is refused by its foreign key."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        kind = "category" if scope is CouponScope.CATEGORIES else "product"
        raise ValidationFailed(f"target_ids names an unknown {kind}", "target_ids",
                               code="unknown_target") from exc


def create_template(session: Session, *, clock: Clock, actor: Principal,
                    data: CouponTemplateCreate) -> CouponTemplate:
    """A manager's or owner's coupon design; audited."""
    require_role(actor, Role.MANAGER, users_only=True)
    values = data.model_dump()
    values["active"] = True
    _check_template(values)
    now = clock.now()
    template = CouponTemplate(
        name=data.name, description=data.description, kind=data.kind.value,
        amount_minor=data.amount_minor, percent=data.percent, cap_minor=data.cap_minor,
        min_spend_minor=data.min_spend_minor, scope=data.scope.value,
        validity=data.validity.value, starts_at=data.starts_at, ends_at=data.ends_at,
        valid_days=data.valid_days, per_member_limit=data.per_member_limit,
        total_limit=data.total_limit, restore_on_refund=data.restore_on_refund, active=True,
        created_at=now, updated_at=now, targets=_targets(data.scope, data.target_ids))
    session.add(template)
    _flush_targets(session, data.scope)
    audit.record(session, clock=clock, actor=actor, action="coupon_template.created",
                 entity_type="coupon_template", entity_id=template.id,
                 details=_audit_values(_template_values(template)))
    return template


def _audit_values(values: dict[str, Any]) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v.value if hasattr(v, "value") else v
    return {k: plain(v) for k, v in values.items()}


def update_template(session: Session, *, clock: Clock, actor: Principal,
                    template_id: uuid.UUID, data: CouponTemplateUpdate) -> CouponTemplate:
    """Change a template. Once it has issued a coupon its discount terms are frozen, so a
    coupon in a customer's hands is always worth what it said when it was issued; names,
    limits, the validity of future issues and the refund policy may still change."""
    require_role(actor, Role.MANAGER, users_only=True)
    template = _locked_template(session, template_id)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "kind", "scope", "validity", "min_spend_minor", "restore_on_refund",
                "active", "description"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
    before = _template_values(template)
    after = before | changes
    if after.get("target_ids") is not None:
        after["target_ids"] = sorted(after["target_ids"])
    changed = sorted(k for k in changes if after[k] != before[k])
    if issued_count(session, template_id=template.id):
        for key in changed:
            if key in TERMS_FIELDS:
                raise ValidationFailed(
                    "This template has issued coupons: its discount terms cannot change "
                    "(create a new template instead)", key, code="template_in_use")
    _check_template(after)
    for key in changed:
        if key == "target_ids":
            continue
        value = after[key]
        setattr(template, key, value.value if hasattr(value, "value") else value)
    if "target_ids" in changed or "scope" in changed:
        template.targets.clear()
        session.flush()
        template.targets.extend(_targets(after["scope"], after["target_ids"]))
        _flush_targets(session, after["scope"])
    template.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="coupon_template.updated",
                 entity_type="coupon_template", entity_id=template.id,
                 details=_audit_values({k: after[k] for k in changed}))
    return template


def deactivate_template(session: Session, *, clock: Clock, actor: Principal,
                        template_id: uuid.UUID) -> CouponTemplate:
    """Stop issuing from a template. Coupons already issued stay usable until they expire
    or are voided: a customer keeps what they were given."""
    require_role(actor, Role.MANAGER, users_only=True)
    template = _locked_template(session, template_id)
    if template.active:
        template.active = False
        template.updated_at = clock.now()
        session.flush()
        audit.record(session, clock=clock, actor=actor, action="coupon_template.deactivated",
                     entity_type="coupon_template", entity_id=template.id)
    return template


def get_template(session: Session, *, template_id: uuid.UUID) -> CouponTemplate:
    template = session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound("No such coupon template", "template_id")
    return template


def _locked_template(session: Session, template_id: uuid.UUID) -> CouponTemplate:
    template = session.scalar(for_update(
        select(CouponTemplate).where(CouponTemplate.id == template_id)
    ).execution_options(populate_existing=True))
    if template is None:
        raise NotFound("No such coupon template", "template_id")
    return template


def list_templates(session: Session, *, include_inactive: bool = False) -> list[CouponTemplate]:
    stmt = select(CouponTemplate).order_by(CouponTemplate.created_at.desc(), CouponTemplate.id)
    if not include_inactive:
        stmt = stmt.where(CouponTemplate.active.is_(True))
    return list(session.scalars(stmt))


def issued_count(session: Session, *, template_id: uuid.UUID,
                 member_id: uuid.UUID | None = None) -> int:
    """Coupons issued from the template (to one member, if given); replacements excluded."""
    stmt = select(func.count()).select_from(Coupon).where(
        Coupon.template_id == template_id, Coupon.replaces_coupon_id.is_(None))
    if member_id is not None:
        stmt = stmt.where(Coupon.member_id == member_id)
    return int(session.scalar(stmt) or 0)


def issued_counts(session: Session) -> dict[uuid.UUID, int]:
    rows = session.execute(select(Coupon.template_id, func.count())
                           .where(Coupon.replaces_coupon_id.is_(None))
                           .group_by(Coupon.template_id))
    return {template_id: int(n) for template_id, n in rows}


# ---------------------------------------------------------------- issue


def _fresh_codes(session: Session, count: int) -> list[str]:
    """``count`` new codes not in use (a clash at 2^54 is unlikely but checked)."""
    codes: set[str] = set()
    while len(codes) < count:
        wanted = {rules.new_coupon_code() for _ in range(count - len(codes))}
        taken = set(session.scalars(select(Coupon.code).where(Coupon.code.in_(wanted))))
        codes |= wanted - taken
    return sorted(codes)


def _active_member(session: Session, member_id: uuid.UUID, field: str = "member_id") -> Member:
    member = members.get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise ValidationFailed("The member is not active", field, code="not_active")
    return member


def _new_coupon(session: Session, *, clock: Clock, template: CouponTemplate, code: str,
                member_id: uuid.UUID | None, source: CouponSource, source_ref: str | None,
                issued_by: str, valid_from: datetime, valid_until: datetime,
                replaces: uuid.UUID | None = None) -> Coupon:
    coupon = Coupon(template_id=template.id, member_id=member_id, code=code,
                    status=CouponStatus.ISSUED.value, source=source.value,
                    source_ref=source_ref, issued_at=clock.now(), issued_by=issued_by,
                    valid_from=valid_from, valid_until=valid_until,
                    replaces_coupon_id=replaces, void_reason="")
    session.add(coupon)
    return coupon


def _emit_issued(session: Session, clock: Clock, coupon: Coupon) -> None:
    emit(session, clock=clock, type="coupon.issued", subject_id=coupon.member_id,
         payload={"coupon_id": str(coupon.id), "code": coupon.code,
                  "template_id": str(coupon.template_id),
                  "member_id": str(coupon.member_id) if coupon.member_id else None,
                  "source": coupon.source, "valid_from": coupon.valid_from.isoformat(),
                  "valid_until": coupon.valid_until.isoformat()})


def issue_coupons(session: Session, *, clock: Clock, actor: Principal | None,
                  template_id: uuid.UUID, member_id: uuid.UUID | None = None, count: int = 1,
                  source: CouponSource = CouponSource.MANUAL,
                  source_ref: str | None = None) -> list[Coupon]:
    """Issue ``count`` coupons to a member, or bearer coupons when ``member_id`` is None.

    Staff issuing by hand need the manager role (audited); the system (``actor=None``:
    campaigns, birthdays, referrals) may issue too. The template row is locked while the
    limits are counted, so concurrent issues never exceed ``total_limit`` or
    ``per_member_limit``. Emits one ``coupon.issued`` event per coupon.
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    if not 1 <= count <= MAX_ISSUE:
        raise ValidationFailed(f"Issue between 1 and {MAX_ISSUE} coupons at once", "count")
    if source is CouponSource.RESTORE:
        raise ValidationFailed("Replacements are issued by refunds only", "source")
    template = _locked_template(session, template_id)
    if not template.active:
        raise ValidationFailed("This template is no longer active", "template_id",
                               code="template_inactive")
    now = clock.now()
    valid_from, valid_until = rules.coupon_window(
        validity=Validity(template.validity), starts_at=template.starts_at,
        ends_at=template.ends_at, valid_days=template.valid_days, issued_at=now)
    if valid_until <= now:
        raise ValidationFailed("This template's window has ended", "template_id",
                               code="template_ended")
    if member_id is not None:
        _active_member(session, member_id)
    if template.total_limit is not None:
        left = template.total_limit - issued_count(session, template_id=template.id)
        if count > left:
            raise ValidationFailed(f"Only {max(left, 0)} more coupons may be issued from "
                                   "this template", "count", code="total_limit_reached")
    if template.per_member_limit is not None and member_id is not None:
        left = template.per_member_limit - issued_count(session, template_id=template.id,
                                                        member_id=member_id)
        if count > left:
            raise ValidationFailed(f"This member may get {max(left, 0)} more coupons of this "
                                   "template", "member_id", code="member_limit_reached")
    issued_by = actor.label if actor else "system"
    coupons = [_new_coupon(session, clock=clock, template=template, code=code,
                           member_id=member_id, source=source, source_ref=source_ref,
                           issued_by=issued_by, valid_from=valid_from,
                           valid_until=valid_until)
               for code in _fresh_codes(session, count)]
    session.flush()
    for coupon in coupons:
        _emit_issued(session, clock, coupon)
    if actor is not None:
        audit.record(session, clock=clock, actor=actor, action="coupon.issued",
                     entity_type="coupon_template", entity_id=template.id,
                     details={"count": count, "source": source.value,
                              "member_id": str(member_id) if member_id else None})
    return coupons


# ---------------------------------------------------------------- reads


def find_coupon(session: Session, *, code: str) -> Coupon | None:
    """The coupon with this code as typed (spaces, dashes and case ignored), or None."""
    normal = rules.normalise_code(code)
    if not rules.is_well_formed(normal, rules.COUPON_CODE_LENGTH):
        return None
    return session.scalar(select(Coupon).where(Coupon.code == normal))


def get_coupon(session: Session, *, code: str) -> Coupon:
    coupon = find_coupon(session, code=code)
    if coupon is None:
        raise NotFound("No coupon has this code", "code", code="coupon_unknown")
    return coupon


def redemption_of(session: Session, *, coupon_id: uuid.UUID) -> CouponRedemption | None:
    return session.scalar(select(CouponRedemption).where(CouponRedemption.coupon_id == coupon_id))


def list_member_coupons(session: Session, *, member_id: uuid.UUID,
                        status: CouponStatus | None = None, limit: int = 100) -> list[Coupon]:
    """A member's coupons, newest first."""
    stmt = (select(Coupon).where(Coupon.member_id == member_id)
            .order_by(Coupon.issued_at.desc(), Coupon.id.desc()).limit(limit))
    if status is not None:
        stmt = stmt.where(Coupon.status == status.value)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class CouponView:
    coupon: Coupon
    template: CouponTemplate
    redemption: CouponRedemption | None


def describe(session: Session, *, coupons: Sequence[Coupon]) -> list[CouponView]:
    """Coupons with their template and redemption, in three queries however many."""
    ids = [c.id for c in coupons]
    templates = {t.id: t for t in session.scalars(select(CouponTemplate).where(
        CouponTemplate.id.in_({c.template_id for c in coupons})))} if coupons else {}
    used = {r.coupon_id: r for r in session.scalars(select(CouponRedemption).where(
        CouponRedemption.coupon_id.in_(ids)))} if coupons else {}
    return [CouponView(c, templates[c.template_id], used.get(c.id)) for c in coupons]


def is_usable(coupon: Coupon, *, now: datetime) -> bool:
    return (coupon.status == CouponStatus.ISSUED.value
            and coupon.valid_from <= now < coupon.valid_until)


# ---------------------------------------------------------------- quote and redeem


@dataclass(frozen=True)
class CouponQuote:
    """What a coupon takes off a basket: ``line_discounts`` has one entry per line (0 for
    lines out of scope) and sums exactly to ``discount_minor``."""

    coupon_id: uuid.UUID
    code: str
    template_id: uuid.UUID
    label: str  # the template's name, for the receipt
    eligible_minor: int
    discount_minor: int
    line_discounts: tuple[int, ...]


@dataclass(frozen=True)
class CouponRedeemed(CouponQuote):
    redemption_id: uuid.UUID
    redemption: CouponRedemption


def _terms(template: CouponTemplate) -> rules.Terms:
    scope = CouponScope(template.scope)
    return rules.Terms(
        kind=CouponKind(template.kind), amount_minor=template.amount_minor,
        percent=template.percent, cap_minor=template.cap_minor,
        min_spend_minor=template.min_spend_minor, scope=scope,
        category_ids=frozenset(t.category_id for t in template.targets
                               if t.category_id is not None),
        product_ids=frozenset(t.product_id for t in template.targets
                              if t.product_id is not None))


def _state(coupon: Coupon) -> rules.CouponState:
    return rules.CouponState(CouponStatus(coupon.status), coupon.valid_from, coupon.valid_until,
                             coupon.member_id)


def _check_lines(lines: Sequence[QuoteLine]) -> None:
    if not lines:
        raise ValidationFailed("A basket needs at least one line", "lines", code="required")
    for i, line in enumerate(lines):
        if line.quantity <= 0:
            raise ValidationFailed("Quantity must be positive", f"lines.{i}.quantity")
        if line.unit_price_minor < 0:
            raise ValidationFailed("Price cannot be negative", f"lines.{i}.unit_price_minor")


def _refused(refusal: Refusal) -> PatronError:
    if refusal.code == rules.ALREADY_REDEEMED:
        return Conflict(refusal.message, FIELD, code=refusal.code)
    return ValidationFailed(refusal.message, FIELD, code=refusal.code)


def _member_redemptions(session: Session, *, template_id: uuid.UUID,
                        member_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.count()).select_from(CouponRedemption).where(
        CouponRedemption.template_id == template_id,
        CouponRedemption.member_id == member_id)) or 0)


def _evaluate(session: Session, *, now: datetime, coupon: Coupon | None,
              member_id: uuid.UUID | None, lines: Sequence[QuoteLine],
              lock_template: bool) -> tuple[CouponTemplate, rules.Discount]:
    """Every check of quote and redeem, in one place; raises ``Refusal``."""
    if coupon is None:
        raise Refusal(rules.UNKNOWN, "No coupon has this code")
    rules.check_usable(_state(coupon), now=now, member_id=member_id)
    template = get_template(session, template_id=coupon.template_id)
    if (template.per_member_limit is not None and coupon.member_id is None
            and member_id is not None):
        # a bearer coupon of an offer limited per member: count this member's uses with
        # the template locked, so two tills cannot both take the member's last use
        if lock_template:
            template = _locked_template(session, template.id)
        limit = template.per_member_limit or 0
        used = _member_redemptions(session, template_id=template.id, member_id=member_id)
        if used >= limit:
            raise Refusal(rules.MEMBER_LIMIT,
                          f"This member has already used this offer {limit} time(s)")
    return template, rules.discount_for(_terms(template), lines)


def quote(session: Session, *, clock: Clock, code: str, member_id: uuid.UUID | None,
          store_id: uuid.UUID | None, lines: Sequence[QuoteLine]) -> CouponQuote:
    """What the coupon ``code`` would take off ``lines`` for this member, without using it.

    Raises ``ValidationFailed`` on field ``coupon_codes`` with a stable code saying why
    not: ``coupon_unknown``, ``coupon_expired``, ``coupon_not_yet_valid``, ``coupon_void``,
    ``coupon_already_redeemed``, ``coupon_member_required``, ``coupon_other_member``,
    ``coupon_member_limit_reached``, ``coupon_min_spend_not_met``,
    ``coupon_nothing_in_scope`` or ``coupon_no_discount``. ``store_id`` is accepted so that
    quote and redeem take the same arguments (store-restricted coupons may use it).
    Nothing is locked or written: the answer can be stale by the time ``redeem`` runs.
    """
    del store_id  # no store-restricted templates yet
    _check_lines(lines)
    if member_id is not None:
        members.get_member(session, member_id=member_id)
    coupon = find_coupon(session, code=code)
    try:
        template, discount = _evaluate(session, now=clock.now(), coupon=coupon,
                                       member_id=member_id, lines=lines, lock_template=False)
    except Refusal as refusal:
        raise ValidationFailed(refusal.message, FIELD, code=refusal.code) from None
    assert coupon is not None
    return CouponQuote(coupon.id, coupon.code, template.id, template.name,
                       discount.eligible_minor, discount.discount_minor, discount.line_discounts)


def _store_for(actor: Principal | None, store_id: uuid.UUID | None) -> uuid.UUID:
    if actor is not None:
        if store_id is None:
            store_id = actor.default_store_id
        else:
            require_store(actor, store_id)
    if store_id is None:
        raise ValidationFailed("Say in which store the coupon is used", "store_id",
                               code="required")
    return store_id


def redeem(session: Session, *, clock: Clock, actor: Principal | None, code: str,
           member_id: uuid.UUID | None, store_id: uuid.UUID | None,
           sale_id: uuid.UUID | None, lines: Sequence[QuoteLine],
           reference: str | None = None) -> CouponRedeemed:
    """Use the coupon ``code`` on ``lines``: the same checks as ``quote``, under a row lock,
    then the one redemption row; returns the discount and its split over the lines.

    ``store_id`` defaults to the actor's store; ``sale_id`` is the checkout's sale (flush
    the sale first: it is a foreign key) or None for a till that applies coupons itself
    (it may pass its own receipt number as ``reference``). A coupon that was already used
    raises ``Conflict`` (409) with code ``coupon_already_redeemed``; every other refusal is
    the ``ValidationFailed`` that ``quote`` raises. Emits ``coupon.redeemed``.
    """
    _check_lines(lines)
    store = _store_for(actor, store_id)
    if member_id is not None:
        members.get_member(session, member_id=member_id)
    now = clock.now()
    normal = rules.normalise_code(code)
    coupon = None
    if rules.is_well_formed(normal, rules.COUPON_CODE_LENGTH):
        coupon = session.scalar(for_update(select(Coupon).where(Coupon.code == normal))
                                .execution_options(populate_existing=True))
    try:
        template, discount = _evaluate(session, now=now, coupon=coupon, member_id=member_id,
                                       lines=lines, lock_template=True)
    except Refusal as refusal:
        raise _refused(refusal) from None
    assert coupon is not None
    redemption = CouponRedemption(
        coupon_id=coupon.id, template_id=template.id, member_id=member_id, store_id=store,
        sale_id=sale_id, reference=reference, eligible_minor=discount.eligible_minor,
        discount_minor=discount.discount_minor,
        actor_label=actor.label if actor else "system", redeemed_at=now)
    session.add(redemption)
    # No IntegrityError handling on purpose: under the lock this insert cannot clash; if
    # it does, the lock is broken and the request must fail, not give the discount twice.
    session.flush()
    coupon.status = CouponStatus.REDEEMED.value
    session.flush()
    emit(session, clock=clock, type="coupon.redeemed", subject_id=member_id, store_id=store,
         payload={"coupon_id": str(coupon.id), "redemption_id": str(redemption.id),
                  "template_id": str(template.id),
                  "member_id": str(member_id) if member_id else None,
                  "sale_id": str(sale_id) if sale_id else None,
                  "discount_minor": discount.discount_minor})
    return CouponRedeemed(coupon.id, coupon.code, template.id, template.name,
                          discount.eligible_minor, discount.discount_minor,
                          discount.line_discounts, redemption.id, redemption)


# ---------------------------------------------------------------- void, expire, restore


def void_coupon(session: Session, *, clock: Clock, actor: Principal, code: str,
                reason: str) -> Coupon:
    """A manager withdraws an unused coupon; audited. Voiding a void coupon changes nothing."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not reason.strip():
        raise ValidationFailed("Say why the coupon is voided", "reason", code="required")
    normal = rules.normalise_code(code)
    coupon = None
    if rules.is_well_formed(normal, rules.COUPON_CODE_LENGTH):
        coupon = session.scalar(for_update(select(Coupon).where(Coupon.code == normal))
                                .execution_options(populate_existing=True))
    if coupon is None:
        raise NotFound("No coupon has this code", "code", code="coupon_unknown")
    if coupon.status == CouponStatus.VOID.value:
        return coupon
    if coupon.status == CouponStatus.REDEEMED.value:
        raise Conflict("This coupon has already been used", "code",
                       code=rules.ALREADY_REDEEMED)
    if coupon.status == CouponStatus.EXPIRED.value:
        raise Conflict("This coupon has expired", "code", code=rules.EXPIRED)
    now = clock.now()
    coupon.status = CouponStatus.VOID.value
    coupon.voided_at, coupon.voided_by, coupon.void_reason = now, actor.label, reason.strip()
    session.flush()
    emit(session, clock=clock, type="coupon.voided", subject_id=coupon.member_id,
         payload={"coupon_id": str(coupon.id),
                  "member_id": str(coupon.member_id) if coupon.member_id else None})
    audit.record(session, clock=clock, actor=actor, action="coupon.voided",
                 entity_type="coupon", entity_id=coupon.id,
                 details={"code": coupon.code, "reason": coupon.void_reason})
    return coupon


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def expire_due(session: Session, *, clock: Clock) -> int:
    """The daily job: mark unused coupons whose window has closed as ``expired``.

    Quote and redeem already refuse them by time; this makes the status say so and emits
    ``coupon.expired`` for each. Returns how many coupons expired.
    """
    now = clock.now()
    due = session.execute(
        select(Coupon.id, Coupon.member_id, Coupon.template_id)
        .where(Coupon.status == CouponStatus.ISSUED.value, Coupon.valid_until <= now)
        .order_by(Coupon.id)).all()
    expired = 0
    for chunk in _chunks(due, 500):
        result = session.execute(
            update(Coupon)
            .where(Coupon.id.in_([row.id for row in chunk]),
                   Coupon.status == CouponStatus.ISSUED.value)
            .values(status=CouponStatus.EXPIRED.value)
            .execution_options(synchronize_session="fetch"))
        expired += int(getattr(result, "rowcount", 0) or 0)
        for row in chunk:
            emit(session, clock=clock, type="coupon.expired", subject_id=row.member_id,
                 payload={"coupon_id": str(row.id), "template_id": str(row.template_id),
                          "member_id": str(row.member_id) if row.member_id else None})
    session.flush()
    return expired


def restore_for_refund(session: Session, *, clock: Clock, actor: Principal | None,
                       sale_id: uuid.UUID | None = None, code: str | None = None,
                       refund_id: uuid.UUID | None = None, reason: str = "") -> list[Coupon]:
    """Give back the coupons used on a refunded sale (or the one coupon ``code``), where
    the template's ``restore_on_refund`` says so; returns the replacement coupons.

    The original coupons stay ``redeemed`` (see the module docstring); each gets at most
    one replacement with a new code and the original's window. A coupon whose window has
    closed, or whose template does not restore, is skipped; calling again restores nothing
    twice. Call it when the sale is refunded in full (partial refunds keep the coupon used).
    """
    if (sale_id is None) == (code is None):
        raise ValidationFailed("Give either sale_id or code", "sale_id")
    if sale_id is not None:
        redemptions = list(session.scalars(
            select(CouponRedemption).where(CouponRedemption.sale_id == sale_id)
            .order_by(CouponRedemption.coupon_id)))
    else:
        coupon = get_coupon(session, code=code or "")
        found = redemption_of(session, coupon_id=coupon.id)
        if found is None:
            raise ValidationFailed("This coupon has not been used", "code",
                                   code="coupon_not_redeemed")
        redemptions = [found]
    now = clock.now()
    replacements: list[Coupon] = []
    for redemption in redemptions:  # locked in coupon id order, the house lock order
        if actor is not None:
            require_store(actor, redemption.store_id)
        original = session.scalar(for_update(select(Coupon).where(
            Coupon.id == redemption.coupon_id)).execution_options(populate_existing=True))
        assert original is not None
        done = session.scalar(select(CouponRestoration.id).where(
            CouponRestoration.redemption_id == redemption.id))
        template = get_template(session, template_id=original.template_id)
        if done is not None or not template.restore_on_refund or original.valid_until <= now:
            continue
        replacement = _new_coupon(
            session, clock=clock, template=template, code=_fresh_codes(session, 1)[0],
            member_id=original.member_id, source=CouponSource.RESTORE,
            source_ref=str(original.id), issued_by=actor.label if actor else "system",
            valid_from=original.valid_from, valid_until=original.valid_until,
            replaces=original.id)
        session.flush()
        session.add(CouponRestoration(
            redemption_id=redemption.id, original_coupon_id=original.id,
            replacement_coupon_id=replacement.id, refund_id=refund_id, reason=reason,
            actor_label=actor.label if actor else "system", restored_at=now))
        session.flush()
        _emit_issued(session, clock, replacement)
        emit(session, clock=clock, type="coupon.restored", subject_id=original.member_id,
             payload={"coupon_id": str(original.id), "replacement_id": str(replacement.id),
                      "redemption_id": str(redemption.id),
                      "refund_id": str(refund_id) if refund_id else None})
        if actor is not None:
            audit.record(session, clock=clock, actor=actor, action="coupon.restored",
                         entity_type="coupon", entity_id=original.id,
                         store_id=redemption.store_id,
                         details={"replacement_id": str(replacement.id), "reason": reason})
        replacements.append(replacement)
    return replacements


def replacement_of(session: Session, *, coupon_id: uuid.UUID) -> Coupon | None:
    return session.scalar(select(Coupon).where(Coupon.replaces_coupon_id == coupon_id))


def verify(session: Session, *, limit: int = 100) -> list[str]:
    """Problems in the coupon books (for ``patron doctor``): a used coupon without its one
    redemption, a redemption of a coupon not marked used, a replacement without its
    restoration record, a template issued beyond its total limit."""
    problems: list[str] = []
    used_without_row = session.scalars(
        select(Coupon.code).outerjoin(CouponRedemption, CouponRedemption.coupon_id == Coupon.id)
        .where(Coupon.status == CouponStatus.REDEEMED.value, CouponRedemption.id.is_(None))
        .limit(limit))
    problems += [f"coupon {code}: redeemed but has no redemption" for code in used_without_row]
    row_without_use = session.scalars(
        select(Coupon.code).join(CouponRedemption, CouponRedemption.coupon_id == Coupon.id)
        .where(Coupon.status != CouponStatus.REDEEMED.value).limit(limit))
    problems += [f"coupon {code}: has a redemption but is not marked redeemed"
                 for code in row_without_use]
    orphans = session.scalars(
        select(Coupon.code)
        .outerjoin(CouponRestoration, CouponRestoration.replacement_coupon_id == Coupon.id)
        .where(Coupon.replaces_coupon_id.is_not(None), CouponRestoration.id.is_(None))
        .limit(limit))
    problems += [f"coupon {code}: a replacement without a restoration" for code in orphans]
    counts = issued_counts(session)
    for template in session.scalars(select(CouponTemplate)
                                    .where(CouponTemplate.total_limit.is_not(None))):
        if counts.get(template.id, 0) > (template.total_limit or 0):
            problems.append(f"coupon template {template.id}: {counts[template.id]} issued, "
                            f"limit {template.total_limit}")
    return problems


# ---------------------------------------------------------------- referrals


def _live(session: Session, member_id: uuid.UUID) -> Member:
    """The member, or the survivor they were merged into."""
    member = members.get_member(session, member_id=member_id)
    hops = 0
    while member.merged_into_id is not None and hops < 10:
        member = members.get_member(session, member_id=member.merged_into_id)
        hops += 1
    return member


def find_referral_code(session: Session, *, member_id: uuid.UUID) -> ReferralCode | None:
    return session.scalar(select(ReferralCode).where(ReferralCode.member_id == member_id))


def referral_code_owner(session: Session, *, code: str) -> uuid.UUID | None:
    """The active member whose referral code this is (as typed: case and dashes ignored)."""
    normal = rules.normalise_code(code)
    if not rules.is_well_formed(normal, rules.REFERRAL_CODE_LENGTH):
        return None
    ref = session.scalar(select(ReferralCode).where(ReferralCode.code == normal))
    if ref is None:
        return None
    owner = _live(session, ref.member_id)
    return owner.id if owner.status == MemberStatus.ACTIVE.value else None


def referral_code_for(session: Session, *, clock: Clock, member_id: uuid.UUID) -> ReferralCode:
    """The member's referral code, created on first use (one per member, unique, short)."""
    existing = find_referral_code(session, member_id=member_id)
    if existing is not None:
        return existing
    _active_member(session, member_id)
    for _ in range(10):
        row = ReferralCode(member_id=member_id, code=rules.new_referral_code(),
                           created_at=clock.now())
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return row
        except IntegrityError:
            # another request created this member's code first, or the code is taken
            existing = session.scalar(select(ReferralCode)
                                      .where(ReferralCode.member_id == member_id))
            if existing is not None:
                return existing
    raise Conflict("Could not allocate a referral code", "member_id")  # pragma: no cover


def referrer_of(session: Session, *, member_id: uuid.UUID) -> uuid.UUID | None:
    """Who referred the member: a referral code, else the card given at enrolment."""
    attribution = session.scalar(select(ReferralAttribution).where(
        ReferralAttribution.referred_member_id == member_id))
    if attribution is not None:
        return attribution.referrer_member_id
    return members.get_member(session, member_id=member_id).referred_by_id


def attribute_referral(session: Session, *, clock: Clock, actor: Principal | None,
                       new_member_id: uuid.UUID, code: str) -> ReferralAttribution:
    """Record that ``code``'s owner referred the new member (once; before the first
    purchase). Giving the same referrer again changes nothing."""
    field = "code"
    normal = rules.normalise_code(code)
    ref = None
    if rules.is_well_formed(normal, rules.REFERRAL_CODE_LENGTH):
        ref = session.scalar(select(ReferralCode).where(ReferralCode.code == normal))
    if ref is None:
        raise ValidationFailed("No member has this referral code", field,
                               code="referral_code_unknown")
    referrer = _live(session, ref.member_id)
    referred = _active_member(session, new_member_id)
    if referrer.id == referred.id:
        raise ValidationFailed("A member cannot refer themselves", field,
                               code="self_referral")
    current = referrer_of(session, member_id=referred.id)
    if current is not None and _live(session, current).id != referrer.id:
        raise Conflict("This member was referred by someone else", field,
                       code="referral_already_attributed")
    existing = session.scalar(select(ReferralAttribution).where(
        ReferralAttribution.referred_member_id == referred.id))
    if existing is not None:
        return existing
    if session.scalar(select(ReferralReward.id).where(
            ReferralReward.referred_member_id == referred.id)) is not None:
        raise Conflict("This member's first purchase has already been made", field,
                       code="referral_too_late")
    row = ReferralAttribution(referred_member_id=referred.id, referrer_member_id=referrer.id,
                              code=normal, actor_label=actor.label if actor else "system",
                              attributed_at=clock.now())
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict("This member was referred by someone else", field,
                       code="referral_already_attributed") from exc
    emit(session, clock=clock, type="referral.attributed", subject_id=referred.id,
         payload={"member_id": str(referred.id), "referrer_id": str(referrer.id)})
    if actor is not None:
        audit.record(session, clock=clock, actor=actor, action="referral.attributed",
                     entity_type="member", entity_id=referred.id,
                     details={"referrer_id": str(referrer.id)})
    return row


def get_referral_rule(session: Session) -> ReferralRule | None:
    return session.get(ReferralRule, 1)


def set_referral_rule(session: Session, *, clock: Clock, actor: Principal,
                      data: ReferralRuleIn) -> ReferralRule:
    """Replace the brand's referral rule (managers and owners); audited."""
    require_role(actor, Role.MANAGER, users_only=True)
    for name in ("referrer_template_id", "referred_template_id"):
        template_id = getattr(data, name)
        if template_id is not None and session.get(CouponTemplate, template_id) is None:
            raise ValidationFailed("No such coupon template", name, code="unknown_template")
    if data.active and data.referrer_template_id is None and data.referred_template_id is None:
        raise ValidationFailed("An active rule rewards at least one side",
                               "referrer_template_id", code="required")
    rule = session.get(ReferralRule, 1, with_for_update=True)
    if rule is None:
        rule = ReferralRule(id=1, updated_at=clock.now())
        session.add(rule)
    rule.active = data.active
    rule.referrer_template_id = data.referrer_template_id
    rule.referred_template_id = data.referred_template_id
    rule.min_purchase_minor = data.min_purchase_minor
    rule.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="referral.rule_updated",
                 entity_type="referral_rule", entity_id="1",
                 details=_audit_values(data.model_dump()))
    return rule


def _reward_coupon(session: Session, *, clock: Clock, template_id: uuid.UUID | None,
                   member: Member, reward_id: uuid.UUID) -> uuid.UUID | None:
    """One side's reward; None (and no harm to the sale) if its template cannot issue now:
    inactive, ended, or the member's limit reached (e.g. "at most 5 referral rewards")."""
    if template_id is None or member.status != MemberStatus.ACTIVE.value:
        return None
    try:
        with session.begin_nested():
            coupons = issue_coupons(session, clock=clock, actor=None, template_id=template_id,
                                    member_id=member.id, source=CouponSource.REFERRAL,
                                    source_ref=str(reward_id))
    except (ValidationFailed, NotFound):
        return None
    return coupons[0].id


def on_first_purchase(session: Session, *, clock: Clock, member_id: uuid.UUID,
                      sale_id: uuid.UUID | None, amount_minor: int) -> ReferralReward | None:
    """Settle a referral when the referred member makes their first purchase.

    The checkout calls this after the member's first completed sale (``amount_minor`` is
    what they paid, after discounts; flush the sale first). If the member was referred and
    the rule is active, the outcome is written once -- ``rewarded`` (the rule's coupons are
    issued to the referrer and to the new member) or ``below_minimum`` -- and returned.
    Returns None when there is nothing to do: no referrer, no active rule, or the referral
    was already settled (also by a concurrent call: the UNIQUE row decides). Never raises
    because a reward coupon cannot be issued; that side simply gets none.
    """
    if amount_minor < 0:
        raise ValidationFailed("amount_minor cannot be negative", "amount_minor")
    referrer_id = referrer_of(session, member_id=member_id)
    rule = get_referral_rule(session)
    if referrer_id is None or rule is None or not rule.active:
        return None
    if session.scalar(select(ReferralReward.id).where(
            ReferralReward.referred_member_id == member_id)) is not None:
        return None
    referrer = _live(session, referrer_id)
    referred = members.get_member(session, member_id=member_id)
    if referrer.id == referred.id:
        return None
    qualifies = amount_minor >= rule.min_purchase_minor
    reward = ReferralReward(
        referred_member_id=member_id, referrer_member_id=referrer.id, sale_id=sale_id,
        purchase_minor=amount_minor,
        outcome=(ReferralOutcome.REWARDED if qualifies else ReferralOutcome.BELOW_MINIMUM).value,
        occurred_at=clock.now())
    try:
        with session.begin_nested():
            session.add(reward)
            session.flush()
    except IntegrityError:
        return None  # a concurrent first purchase settled it
    if qualifies:
        reward.referrer_coupon_id = _reward_coupon(
            session, clock=clock, template_id=rule.referrer_template_id, member=referrer,
            reward_id=reward.id)
        reward.referred_coupon_id = _reward_coupon(
            session, clock=clock, template_id=rule.referred_template_id, member=referred,
            reward_id=reward.id)
        session.flush()
    emit(session, clock=clock, type="referral.settled", subject_id=member_id,
         payload={"member_id": str(member_id), "referrer_id": str(referrer.id),
                  "outcome": reward.outcome,
                  "referrer_coupon_id": str(reward.referrer_coupon_id)
                  if reward.referrer_coupon_id else None,
                  "referred_coupon_id": str(reward.referred_coupon_id)
                  if reward.referred_coupon_id else None})
    return reward


def reward_of(session: Session, *, member_id: uuid.UUID) -> ReferralReward | None:
    return session.scalar(select(ReferralReward).where(
        ReferralReward.referred_member_id == member_id))


# ---------------------------------------------------------------- merge


def _merge_one_per_member(model: Any, member_col: str, other_cols: tuple[str, ...] = ()
                          ) -> members.MergeHook:
    """A hook for a table with one row per member: the duplicate's row moves to the
    survivor unless the survivor has its own (then it stays on the merged tombstone, which
    leads to the survivor); other member columns are re-pointed."""

    def hook(session: Session, _clock: Clock, survivor_id: uuid.UUID,
             duplicate_id: uuid.UUID) -> int:
        col = getattr(model, member_col)
        moved = 0
        ours = session.scalar(select(model.id).where(col == survivor_id))
        if ours is None:
            result = session.execute(update(model).where(col == duplicate_id)
                                     .values({member_col: survivor_id}))
            moved += int(getattr(result, "rowcount", 0) or 0)
        for name in other_cols:
            other = getattr(model, name)
            result = session.execute(update(model).where(other == duplicate_id)
                                     .values({name: survivor_id}))
            moved += int(getattr(result, "rowcount", 0) or 0)
        return moved

    return hook


members.MERGE_HOOKS["referral_codes"] = _merge_one_per_member(ReferralCode, "member_id")
members.MERGE_HOOKS["referral_attributions"] = _merge_one_per_member(
    ReferralAttribution, "referred_member_id", ("referrer_member_id",))
members.MERGE_HOOKS["referral_rewards"] = _merge_one_per_member(
    ReferralReward, "referred_member_id", ("referrer_member_id",))


# ---------------------------------------------------------------- reads for the member page
# (added for the member 360 page, issue 8)


def referrals_made(session: Session, *, referrer_ids: Collection[uuid.UUID]
                   ) -> list[ReferralAttribution]:
    """Referral-code attributions whose referrer is one of ``referrer_ids``, oldest first."""
    if not referrer_ids:
        return []
    return list(session.scalars(select(ReferralAttribution).where(
        ReferralAttribution.referrer_member_id.in_(list(referrer_ids)))
        .order_by(ReferralAttribution.attributed_at)))


def rewards_of(session: Session, *, member_ids: Collection[uuid.UUID]
               ) -> dict[uuid.UUID, ReferralReward]:
    """How each referred member's referral was settled (members not settled are left out)."""
    if not member_ids:
        return {}
    return {r.referred_member_id: r for r in session.scalars(select(ReferralReward).where(
        ReferralReward.referred_member_id.in_(list(member_ids))))}
