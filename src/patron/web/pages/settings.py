"""Programme settings: the index of settings, points rules, tiers and paid membership plans.

Owners change the loyalty programme (the services refuse anyone else); managers may look,
so they see the same pages read-only. Every change goes through ``loyalty.service`` /
``loyalty.membership``, which audit-log it. Tier thresholds follow the programme's tier
basis: with ``spend`` they are money typed in major units and kept in minor units, with
``points`` whole points. Coupons, top-up bonuses and messaging live in
``settings_offers`` and ``settings_messaging``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.enums import Role
from patron.catalog import service as catalog
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.loyalty.enums import ExpiryPolicy, Rounding, TierBasis
from patron.loyalty.models import Tier
from patron.loyalty.schemas import (
    MembershipPlanCreate,
    MultiplierCreate,
    ProgramUpdate,
    TierCreate,
)
from patron.web import nav
from patron.web.deps import Db, Page, PostedForm, principal_of
from patron.web.forms import Form
from patron.web.i18n import N_
from patron.web.pages.settings_forms import (
    ManagerPage,
    is_manager,
    is_owner,
    local_end,
    local_start,
    major,
    parse_money,
    run,
    validated,
    whole,
)
from patron.web.routing import web_router
from patron.web.templating import FLASHES, redirect, render

router = web_router()
nav.register(nav.NavItem("settings", "/settings", N_("Settings"), "gear", Role.MANAGER),
             after="team")
FLASHES.update({
    "program_saved": N_("Points rules saved."),
    "tier_created": N_("Tier created."),
    "tier_saved": N_("Tier saved."),
    "plan_created": N_("Membership plan created."),
    "multiplier_added": N_("Points multiplier added."),
    "multiplier_changed": N_("Points multiplier changed."),
})
#: Display names of the programme's choices (kept here, not in the shared LABELS, whose
#: keys such as "points" other pages use with other meanings).
PROGRAM_LABELS = {
    "floor": N_("Round down"), "half_up": N_("Round half up"), "ceil": N_("Round up"),
    "never": N_("Never expire"), "months": N_("After a number of months"),
    "end_of_next_year": N_("At the end of the next year"),
    "spend": N_("Spend over 12 months"), "points": N_("Points earned over 12 months"),
}

PROGRAM_FIELDS = ("points_per_major", "rounding", "pending_days", "expiry_policy",
                  "expiry_months", "expiring_notice_days", "points_per_major_redeemed",
                  "birthday_multiplier_pct", "tier_basis", "downgrade_grace_days")
PROGRAM_INTS = ("points_per_major", "pending_days", "expiry_months", "expiring_notice_days",
                "points_per_major_redeemed", "birthday_multiplier_pct",
                "downgrade_grace_days")
TIER_FIELDS = ("code", "name", "rank", "threshold", "points_multiplier_pct", "discount_pct")
PLAN_FIELDS = ("code", "name", "sku", "duration_days", "tier_id", "benefits")
MULTIPLIER_FIELDS = ("m_name", "m_scope", "m_category_id", "m_sku", "m_pct", "m_starts_on",
                     "m_ends_on")


@router.get("/settings")
def settings_index(page: ManagerPage, session: Db) -> Response:
    """Cards linking to every setting, with the current value of each at a glance."""
    program = loyalty.get_program(session, clock=page.app.clock)
    return render(page, "settings/index.html", program=program,
                  tiers=loyalty.list_tiers(session), plans=membership.list_plans(session),
                  default_language=page.app.settings.default_language,
                  currency=page.app.settings.currency, can_edit=is_owner(page))


# ---------------------------------------------------------------- points rules


def _program_page(page: Page, session: Session, form: Form, status: int = 200,
                  multiplier_form: Form | None = None) -> Response:
    multipliers = loyalty.list_multipliers(session)
    products = catalog.get_products(session, ids=[m.target_id for m in multipliers
                                                  if m.scope == "product" and m.target_id])
    categories = catalog.list_categories(session)
    targets = {c.id: c.name for c in categories} | {p.id: p.sku for p in products.values()}
    return render(page, "settings/points.html", status=status, form=form,
                  multipliers=multipliers, targets=targets,
                  category_options=[(str(c.id), c.name) for c in categories],
                  multiplier_form=multiplier_form or Form.initial(
                      {"m_scope": "all", "m_pct": 200}, MULTIPLIER_FIELDS),
                  can_add_multipliers=is_manager(page),
                  roundings=[r.value for r in Rounding],
                  expiries=[e.value for e in ExpiryPolicy],
                  bases=[b.value for b in TierBasis], labels=PROGRAM_LABELS,
                  can_edit=is_owner(page))


@router.get("/settings/points")
def points_page(page: ManagerPage, session: Db) -> Response:
    return _program_page(page, session, _program_form(page, session))


@router.post("/settings/points")
def save_points(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, PROGRAM_FIELDS)
    values: dict[str, Any] = {k: whole(form, page, k) for k in PROGRAM_INTS}
    values |= {k: form.get(k) for k in ("rounding", "expiry_policy", "tier_basis")}
    changes = None
    if form.ok:
        changes = validated(page, form, ProgramUpdate, values)
    done, status = run(page, form, lambda: loyalty.update_program(
        session, clock=page.app.clock, actor=principal_of(page),
        changes=changes.model_dump(exclude_none=True) if changes else {}))
    if done is None:
        session.rollback()
        return _program_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/points", flash="program_saved")


def _program_form(page: Page, session: Session) -> Form:
    program = loyalty.get_program(session, clock=page.app.clock)
    return Form.initial({k: getattr(program, k) for k in PROGRAM_FIELDS}, PROGRAM_FIELDS)


@router.post("/settings/points/multipliers")
def add_multiplier(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    """A double-points day, or more points on a category or product (managers)."""
    form = Form.posted(data, MULTIPLIER_FIELDS)
    scope = form.get("m_scope")
    target: uuid.UUID | None = None
    if scope == "category":
        target = form.uuid_value(page, "m_category_id")
    elif scope == "product" and form.get("m_sku"):
        product = catalog.find_product_by_sku(session, sku=form.get("m_sku"))
        if product is None:
            form.add("m_sku", page.gettext(N_("No product has this SKU")))
        else:
            target = product.id
    aliases = {"name": "m_name", "scope": "m_scope", "pct": "m_pct",
               "starts_at": "m_starts_on", "ends_at": "m_ends_on",
               "target_id": "m_sku" if scope == "product" else "m_category_id"}
    values = {"name": form.get("m_name"), "scope": scope, "target_id": target,
              "pct": whole(form, page, "m_pct"),
              "starts_at": local_start(form.date_value(page, "m_starts_on"), page.tz),
              "ends_at": local_end(form.date_value(page, "m_ends_on"), page.tz)}
    body = validated(page, form, MultiplierCreate, values, aliases) if form.ok else None
    done, status = run(page, form, lambda: loyalty.add_multiplier(
        session, clock=page.app.clock, actor=principal_of(page),
        **(body.model_dump() if body else values)), aliases)
    if done is None:
        session.rollback()
        return _program_page(page, session, _program_form(page, session), status, form)
    session.commit()
    return redirect(page, "/settings/points", flash="multiplier_added")


@router.post("/settings/points/multipliers/{multiplier_id}/active")
def toggle_multiplier(page: ManagerPage, session: Db, data: PostedForm,
                      multiplier_id: uuid.UUID) -> Response:
    form = Form.posted(data, ())
    done, status = run(page, form, lambda: loyalty.set_multiplier_active(
        session, clock=page.app.clock, actor=principal_of(page), multiplier_id=multiplier_id,
        active=form.get("active") == "1"))
    if done is None:
        session.rollback()
        return _program_page(page, session, _program_form(page, session), status, form)
    session.commit()
    return redirect(page, "/settings/points", flash="multiplier_changed")


# ---------------------------------------------------------------- tiers


def _by_spend(page: Page, session: Session) -> bool:
    program = loyalty.get_program(session, clock=page.app.clock)
    return bool(program.tier_basis == TierBasis.SPEND.value)


def _threshold(form: Form, page: Page, by_spend: bool) -> int | None:
    if by_spend:
        return parse_money(form, page, "threshold")
    value = whole(form, page, "threshold")
    if value is not None and value < 0:
        form.add("threshold", page.gettext(N_("Must be at least %(limit)s"), limit=0))
        return None
    return value


def _tiers_page(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    return render(page, "settings/tiers.html", status=status, form=form,
                  tiers=loyalty.list_tiers(session), by_spend=_by_spend(page, session),
                  can_edit=is_owner(page))


@router.get("/settings/tiers")
def tiers_page(page: ManagerPage, session: Db) -> Response:
    next_rank = max((t.rank for t in loyalty.list_tiers(session)), default=-1) + 1
    return _tiers_page(page, session, Form.initial(
        {"rank": next_rank, "points_multiplier_pct": 100, "discount_pct": 0}, TIER_FIELDS))


def _tier_values(form: Form, page: Page, by_spend: bool) -> dict[str, Any]:
    return {"name": form.get("name"), "threshold": _threshold(form, page, by_spend),
            "points_multiplier_pct": whole(form, page, "points_multiplier_pct"),
            "discount_pct": whole(form, page, "discount_pct")}


@router.post("/settings/tiers")
def create_tier(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, TIER_FIELDS)
    values = _tier_values(form, page, _by_spend(page, session))
    values |= {"code": form.get("code"), "rank": whole(form, page, "rank")}
    body = validated(page, form, TierCreate, values) if form.ok else None

    def create() -> Tier:
        assert body is not None
        loyalty.check_tier_ladder(session, rank=body.rank, threshold=body.threshold)
        return loyalty.create_tier(session, clock=page.app.clock,
                                   actor=principal_of(page),
                                   **body.model_dump())

    done, status = run(page, form, create)
    if done is None:
        session.rollback()
        return _tiers_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/tiers", flash="tier_created")


def _tier_edit(page: Page, session: Session, tier: Tier, form: Form,
               status: int = 200) -> Response:
    return render(page, "settings/tier_edit.html", status=status, tier=tier, form=form,
                  by_spend=_by_spend(page, session), can_edit=is_owner(page))


@router.get("/settings/tiers/{tier_id}")
def tier_page(page: ManagerPage, session: Db, tier_id: uuid.UUID) -> Response:
    tier = loyalty.get_tier(session, tier_id=tier_id)
    threshold: object = major(page, tier.threshold) if _by_spend(page, session) \
        else tier.threshold
    return _tier_edit(page, session, tier, Form.initial(
        {"name": tier.name, "threshold": threshold,
         "points_multiplier_pct": tier.points_multiplier_pct,
         "discount_pct": tier.discount_pct}, TIER_FIELDS))


@router.post("/settings/tiers/{tier_id}")
def save_tier(page: ManagerPage, session: Db, data: PostedForm,
              tier_id: uuid.UUID) -> Response:
    tier = loyalty.get_tier(session, tier_id=tier_id)
    form = Form.posted(data, TIER_FIELDS)
    values = _tier_values(form, page, _by_spend(page, session))
    body = validated(page, form, TierCreate, values | {"code": tier.code, "rank": tier.rank}) \
        if form.ok else None
    done, status = run(page, form, lambda: loyalty.update_tier(
        session, clock=page.app.clock, actor=principal_of(page),
        tier_id=tier_id, name=body.name if body else "",
        threshold=body.threshold if body else 0,
        points_multiplier_pct=body.points_multiplier_pct if body else 100,
        discount_pct=body.discount_pct if body else 0))
    if done is None:
        session.rollback()
        return _tier_edit(page, session, loyalty.get_tier(session, tier_id=tier_id), form,
                          status)
    session.commit()
    return redirect(page, "/settings/tiers", flash="tier_saved")


# ---------------------------------------------------------------- paid membership plans


def _plans_page(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    plans = membership.list_plans(session)
    products = catalog.get_products(session, ids=[p.product_id for p in plans])
    tiers = loyalty.list_tiers(session)
    return render(page, "settings/plans.html", status=status, form=form, plans=plans,
                  products=products, tiers=tiers, tier_names={t.id: t.name for t in tiers},
                  can_edit=is_owner(page))


@router.get("/settings/plans")
def plans_page(page: ManagerPage, session: Db) -> Response:
    return _plans_page(page, session, Form(fields=frozenset(PLAN_FIELDS)))


@router.post("/settings/plans")
def create_plan(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, PLAN_FIELDS)
    product_id: uuid.UUID | None = None
    if form.get("sku"):
        product = catalog.find_product_by_sku(session, sku=form.get("sku"))
        if product is None:
            form.add("sku", page.gettext(N_("No product has this SKU")))
        else:
            product_id = product.id
    else:
        form.add("sku", page.gettext(N_("This field is required")))
    values = {"code": form.get("code"), "name": form.get("name"), "product_id": product_id,
              "duration_days": whole(form, page, "duration_days"),
              "tier_id": form.uuid_value(page, "tier_id"), "benefits": form.get("benefits")}
    body = validated(page, form, MembershipPlanCreate, values,
                     aliases={"product_id": "sku"}) if form.ok else None
    done, status = run(page, form, lambda: membership.create_plan(
        session, clock=page.app.clock, actor=principal_of(page),
        **(body.model_dump() if body else {})), aliases={"product_id": "sku"})
    if done is None:
        session.rollback()
        return _plans_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/plans", flash="plan_created")
