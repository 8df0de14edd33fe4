"""What a tier gives beyond points and discount: a birthday present and paid-plan perks.

Two benefits of the tier ladder that other domains ask about:

* the **birthday coupon**: the coupon template the birthday greeting issues to a member of
  the tier (care asks :func:`birthday_coupon_templates` for a batch of members; a tier
  without one leaves the care rule's own coupon, if any);
* **plan perks included**: a tier may carry the perks of paid membership plans free of
  charge ("gold members enjoy Plus perks"). A member *has the perks* of a plan while they
  hold a running paid period of it or sit in a tier that includes it (see
  :func:`perk_plan_codes`); promotions limited to a plan's members ask exactly that.

Both are set by an owner (:func:`set_tier_perks`) and audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import NotFound, ValidationFailed
from patron.core.memo import forget
from patron.loyalty.models import Membership, MembershipPlan, MemberTier, Tier, TierPlanPerk
from patron.offers import service as offers


def tier_plan_ids(session: Session, *, tier_id: uuid.UUID) -> list[uuid.UUID]:
    """The plans whose perks the tier includes, in a stable order."""
    return list(session.scalars(select(TierPlanPerk.plan_id)
                                .where(TierPlanPerk.tier_id == tier_id)
                                .order_by(TierPlanPerk.plan_id)))


def set_tier_perks(session: Session, *, clock: Clock, actor: Principal, tier_id: uuid.UUID,
                   birthday_coupon_template_id: uuid.UUID | None,
                   plan_ids: Sequence[uuid.UUID]) -> Tier:
    """Replace a tier's birthday coupon and included plans (an owner's decision)."""
    require_role(actor, Role.OWNER, users_only=True)
    tier = session.get(Tier, tier_id)
    if tier is None:
        raise ValidationFailed("No such tier", "tier_id", code="not_found")
    if birthday_coupon_template_id is not None:
        try:
            offers.get_template(session, template_id=birthday_coupon_template_id)
        except NotFound as exc:
            raise ValidationFailed("No such coupon template", "birthday_coupon_template_id",
                                   code="not_found") from exc
    wanted = sorted(set(plan_ids))
    known = set(session.scalars(select(MembershipPlan.id)
                                .where(MembershipPlan.id.in_(wanted)))) if wanted else set()
    for index, plan_id in enumerate(wanted):
        if plan_id not in known:
            raise ValidationFailed("No such membership plan", f"plan_ids.{index}",
                                   code="not_found")
    before = {"birthday_coupon_template_id": _text(tier.birthday_coupon_template_id),
              "plan_ids": [str(p) for p in tier_plan_ids(session, tier_id=tier.id)]}
    after = {"birthday_coupon_template_id": _text(birthday_coupon_template_id),
             "plan_ids": [str(p) for p in wanted]}
    if before == after:
        return tier
    tier.birthday_coupon_template_id = birthday_coupon_template_id
    session.execute(delete(TierPlanPerk).where(TierPlanPerk.tier_id == tier.id))
    session.add_all(TierPlanPerk(tier_id=tier.id, plan_id=p) for p in wanted)
    session.flush()
    forget(session, "loyalty.tiers")
    audit.record(session, clock=clock, actor=actor, action="tier.perks_changed",
                 entity_type="tier", entity_id=tier.id,
                 details={k: [before[k], after[k]] for k in after if before[k] != after[k]})
    return tier


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def birthday_coupon_templates(session: Session, *, member_ids: Iterable[uuid.UUID]
                              ) -> dict[uuid.UUID, uuid.UUID]:
    """The birthday coupon template of each member's tier, for members whose tier has one."""
    ids = list(set(member_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(MemberTier.member_id, Tier.birthday_coupon_template_id)
        .join(Tier, Tier.id == MemberTier.tier_id)
        .where(MemberTier.member_id.in_(ids), Tier.birthday_coupon_template_id.is_not(None)))
    return {member_id: template_id for member_id, template_id in rows
            if template_id is not None}


def perk_plan_codes(session: Session, *, member_id: uuid.UUID, now: datetime) -> frozenset[str]:
    """Codes of the plans whose perks the member has now: paid for, or included in the tier."""
    paid = select(MembershipPlan.code).join(Membership, Membership.plan_id == MembershipPlan.id) \
        .where(Membership.member_id == member_id, Membership.status == "active",
               Membership.starts_at <= now, Membership.ends_at > now)
    included = select(MembershipPlan.code) \
        .join(TierPlanPerk, TierPlanPerk.plan_id == MembershipPlan.id) \
        .join(MemberTier, MemberTier.tier_id == TierPlanPerk.tier_id) \
        .where(MemberTier.member_id == member_id)
    return frozenset(session.scalars(paid.union(included)))


__all__ = ["birthday_coupon_templates", "perk_plan_codes", "set_tier_perks", "tier_plan_ids"]
