"""Settings of value given away: coupon templates (managers and owners) and top-up bonus
rules of the wallet (owners).

Amounts are typed in major units and kept in minor units. Coupon windows are typed as
local dates in the viewer's time zone: from the start of the first day to the end of the
last (the service stores an exclusive end). Once a template has issued coupons the
service freezes its discount terms, and says so on the form.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.catalog import service as catalog
from patron.offers import service as offers
from patron.offers.enums import CouponKind, CouponScope, Validity
from patron.offers.models import CouponTemplate
from patron.offers.schemas import CouponTemplateCreate, CouponTemplateUpdate
from patron.wallet import service as wallet
from patron.wallet.schemas import BonusRuleIn
from patron.web.deps import Db, Page, PostedForm, principal_of
from patron.web.forms import Form, split_tags
from patron.web.i18n import N_
from patron.web.pages.settings_forms import (
    ManagerPage,
    is_manager,
    is_owner,
    local_day,
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
FLASHES.update({
    "template_created": N_("Coupon template created."),
    "template_saved": N_("Coupon template saved."),
    "bonus_rule_created": N_("Top-up bonus rule created."),
    "bonus_rule_changed": N_("Top-up bonus rule changed."),
})

TEMPLATE_FIELDS = ("name", "description", "kind", "amount", "percent", "cap", "min_spend",
                   "scope", "category_ids", "skus", "validity", "starts_on", "ends_on",
                   "valid_days", "per_member_limit", "total_limit", "restore_on_refund",
                   "active")
TEMPLATE_ALIASES = {"amount_minor": "amount", "cap_minor": "cap", "min_spend_minor": "min_spend",
                    "starts_at": "starts_on", "ends_at": "ends_on"}
RULE_FIELDS = ("name", "min_topup", "bonus", "valid_from", "valid_until")


# ---------------------------------------------------------------- coupon templates


def _category_options(session: Session) -> list[tuple[str, str]]:
    return [(str(c.id), c.name) for c in catalog.list_categories(session)]


def _targets(form: Form, page: Page, session: Session, scope: str) -> list[uuid.UUID]:
    if scope == CouponScope.CATEGORIES.value:
        return form.uuid_values(page, "category_ids")
    if scope != CouponScope.PRODUCTS.value:
        return []
    ids: list[uuid.UUID] = []
    for sku in split_tags(form.get("skus")):
        product = catalog.find_product_by_sku(session, sku=sku)
        if product is None:
            form.add("skus", page.gettext(N_("No product has the SKU %(sku)s"), sku=sku))
        else:
            ids.append(product.id)
    return ids


def _template_values(form: Form, page: Page, session: Session) -> dict[str, Any]:
    """The form as the service's fields; fields that don't apply to the choices are None."""
    kind, scope, validity = form.get("kind"), form.get("scope"), form.get("validity")
    fixed = kind == CouponKind.FIXED.value
    window = validity == Validity.FIXED.value
    return {
        "name": form.get("name"), "description": form.get("description"), "kind": kind,
        "amount_minor": parse_money(form, page, "amount") if fixed else None,
        "percent": whole(form, page, "percent") if not fixed else None,
        "cap_minor": parse_money(form, page, "cap", required=False) if not fixed else None,
        "min_spend_minor": parse_money(form, page, "min_spend", required=False) or 0,
        "scope": scope, "target_ids": _targets(form, page, session, scope),
        "validity": validity,
        "starts_at": local_start(form.date_value(page, "starts_on"), page.tz) if window
        else None,
        "ends_at": local_end(form.date_value(page, "ends_on"), page.tz) if window else None,
        "valid_days": whole(form, page, "valid_days") if not window else None,
        "per_member_limit": whole(form, page, "per_member_limit", required=False),
        "total_limit": whole(form, page, "total_limit", required=False),
        "restore_on_refund": form.checked("restore_on_refund"),
    }


def _coupons_page(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    templates = offers.list_templates(session, include_inactive=True)
    return render(page, "settings/coupons.html", status=status, form=form,
                  templates=templates, issued=offers.issued_counts(session),
                  category_options=_category_options(session), can_edit=is_manager(page))


@router.get("/settings/coupons")
def coupons_page(page: ManagerPage, session: Db) -> Response:
    return _coupons_page(page, session, Form.initial(
        {"kind": "fixed", "scope": "all", "validity": "days", "valid_days": 30},
        TEMPLATE_FIELDS))


@router.post("/settings/coupons")
def create_coupon_template(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, TEMPLATE_FIELDS)
    values = _template_values(form, page, session)
    body = validated(page, form, CouponTemplateCreate, values, TEMPLATE_ALIASES) \
        if form.ok else None
    done, status = run(page, form, lambda: offers.create_template(
        session, clock=page.app.clock, actor=principal_of(page),
        data=body or CouponTemplateCreate.model_validate(values)), TEMPLATE_ALIASES)
    if done is None:
        session.rollback()
        return _coupons_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/coupons", flash="template_created")


def _template_form(page: Page, session: Session, template: CouponTemplate) -> Form:
    targets = offers.target_ids(template)
    skus = ""
    if template.scope == CouponScope.PRODUCTS.value:
        skus = ", ".join(p.sku for p in catalog.get_products(session, ids=targets).values())
    return Form.initial({
        "name": template.name, "description": template.description, "kind": template.kind,
        "amount": major(page, template.amount_minor), "percent": template.percent,
        "cap": major(page, template.cap_minor),
        "min_spend": major(page, template.min_spend_minor) if template.min_spend_minor
        else "", "scope": template.scope,
        "category_ids": targets if template.scope == CouponScope.CATEGORIES.value else [],
        "skus": skus, "validity": template.validity,
        "starts_on": local_day(template.starts_at, page.tz),
        "ends_on": local_day(template.ends_at, page.tz, end=True),
        "valid_days": template.valid_days, "per_member_limit": template.per_member_limit,
        "total_limit": template.total_limit, "restore_on_refund": template.restore_on_refund,
        "active": template.active}, TEMPLATE_FIELDS)


def _template_page(page: Page, session: Session, template: CouponTemplate, form: Form,
                   status: int = 200) -> Response:
    return render(page, "settings/coupon_edit.html", status=status, coupon=template,
                  form=form, issued=offers.issued_count(session, template_id=template.id),
                  category_options=_category_options(session), can_edit=is_manager(page))


@router.get("/settings/coupons/{template_id}")
def coupon_template_page(page: ManagerPage, session: Db, template_id: uuid.UUID) -> Response:
    template = offers.get_template(session, template_id=template_id)
    return _template_page(page, session, template, _template_form(page, session, template))


@router.post("/settings/coupons/{template_id}")
def save_coupon_template(page: ManagerPage, session: Db, data: PostedForm,
                         template_id: uuid.UUID) -> Response:
    template = offers.get_template(session, template_id=template_id)
    form = Form.posted(data, TEMPLATE_FIELDS)
    values = _template_values(form, page, session) | {"active": form.checked("active")}
    body = validated(page, form, CouponTemplateUpdate, values, TEMPLATE_ALIASES) \
        if form.ok else None
    done, status = run(page, form, lambda: offers.update_template(
        session, clock=page.app.clock, actor=principal_of(page), template_id=template_id,
        data=body or CouponTemplateUpdate()), TEMPLATE_ALIASES)
    if done is None:
        session.rollback()
        return _template_page(page, session, offers.get_template(
            session, template_id=template.id), form, status)
    session.commit()
    return redirect(page, "/settings/coupons", flash="template_saved")


# ---------------------------------------------------------------- top-up bonus rules


def _wallet_page(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    return render(page, "settings/wallet.html", status=status, form=form,
                  rules=wallet.list_bonus_rules(session), can_edit=is_owner(page))


@router.get("/settings/wallet")
def wallet_page(page: ManagerPage, session: Db) -> Response:
    return _wallet_page(page, session, Form(fields=frozenset(RULE_FIELDS)))


@router.post("/settings/wallet")
def create_bonus_rule(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, RULE_FIELDS)
    values = {"name": form.get("name"), "min_topup_minor": parse_money(form, page, "min_topup"),
              "bonus_minor": parse_money(form, page, "bonus"),
              "valid_from": local_start(form.date_value(page, "valid_from"), page.tz),
              "valid_until": local_end(form.date_value(page, "valid_until"), page.tz)}
    aliases = {"min_topup_minor": "min_topup", "bonus_minor": "bonus"}
    body = validated(page, form, BonusRuleIn, values, aliases) if form.ok else None
    done, status = run(page, form, lambda: wallet.create_bonus_rule(
        session, clock=page.app.clock, actor=principal_of(page),
        **(body.model_dump() if body else values)), aliases)
    if done is None:
        session.rollback()
        return _wallet_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/wallet", flash="bonus_rule_created")


@router.post("/settings/wallet/{rule_id}/active")
def toggle_bonus_rule(page: ManagerPage, session: Db, data: PostedForm,
                      rule_id: uuid.UUID) -> Response:
    form = Form.posted(data, ())
    done, status = run(page, form, lambda: wallet.set_bonus_rule_active(
        session, clock=page.app.clock, actor=principal_of(page), rule_id=rule_id,
        active=form.get("active") == "1"))
    if done is None:
        session.rollback()
        return _wallet_page(page, session, form, status)
    session.commit()
    return redirect(page, "/settings/wallet", flash="bonus_rule_changed")
