"""Promotions for managers and owners: list, create, edit, start and stop, and a preview
of what a basket would pay.

Every kind the pricing engine knows has its own small form (``/promotions/new?kind=…``);
the page turns the fields into the engine's JSON (money typed in major units, kept in
minor units) and ``promotion_service`` validates, scopes and audits it. The engine names
bad fields by their path (``config.steps.1.spend_minor``); ``field_for`` maps each path
back to the input it came from, so the error shows beside it. A manager runs promotions in
their own stores only: the service refuses the rest and the form says why.

The preview prices a typed basket with the pure engine (``offers.promotions``) against the
active promotions (plus, on a promotion's page, that promotion even when it is stopped).
Usage limits and the holiday calendar are not counted in a preview.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Query
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.enums import Role
from patron.catalog import service as catalog
from patron.core.errors import NotFound
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.members.models import Store
from patron.offers import promotion_service as promotions
from patron.offers.promotion_models import PromotionRecord
from patron.offers.promotion_schemas import PromotionCreate, PromotionUpdate
from patron.offers.promotions import (
    BasketLine,
    MemberFacts,
    PricedBasket,
    PricingContext,
    Promotion,
    PromotionBook,
    price_basket,
)
from patron.offers.promotions.schemas import ANY_TIER, KINDS
from patron.web import nav
from patron.web.deps import Db, Page, PostedForm, principal_of
from patron.web.forms import Form, split_tags
from patron.web.i18n import N_
from patron.web.pages.settings_forms import ManagerPage, major, parse_money, run, whole
from patron.web.routing import web_router
from patron.web.templating import FLASHES, redirect, render

router = web_router()
nav.register(nav.NavItem("promotions", "/promotions", N_("Promotions"), "tag", Role.MANAGER),
             after="catalog")
FLASHES.update({
    "promotion_created": N_("Promotion created."),
    "promotion_saved": N_("Promotion saved."),
    "promotion_started": N_("Promotion started."),
    "promotion_stopped": N_("Promotion stopped."),
})

#: What each kind is called and does, in the kind chooser and the list.
KIND_LABELS = {
    "member_price": N_("Member prices"),
    "nth_item": N_("Nth item discount"),
    "volume": N_("Quantity discount"),
    "buy_x_get_y": N_("Buy X get Y"),
    "bundle": N_("Bundle price"),
    "category_discount": N_("Category discount"),
    "spend_discount": N_("Spend and save"),
    "spend_gift": N_("Spend and get a gift"),
    "cashback": N_("Cashback"),
}
KIND_HINTS = {
    "member_price": N_("Lower prices for members, by tier: a fixed price or a percent off."),
    "nth_item": N_("\"2nd item half price\", \"3 for the price of 2\"."),
    "volume": N_("More off every unit as the quantity rises: 2+ 5 %%, 5+ 10 %%."),
    "buy_x_get_y": N_("Buy 2 get 1 free, or buy a coffee and get a cake at half price."),
    "bundle": N_("A fixed price for a set of products."),
    "category_discount": N_("A percent or an amount off each unit of some products."),
    "spend_discount": N_("Spend 100 get 10 off, with steps or repeating."),
    "spend_gift": N_("Spend an amount and get a product free."),
    "cashback": N_("The nth purchase in a period returns a percent to the wallet."),
}
WEEKDAYS = ((1, N_("Mon")), (2, N_("Tue")), (3, N_("Wed")), (4, N_("Thu")), (5, N_("Fri")),
            (6, N_("Sat")), (7, N_("Sun")))
ROWS = 3  # rows offered for volume tiers, spend steps; bundles get one more
BUNDLE_ROWS = 4
PREVIEW_ROWS = 5

COMMON = ("name", "priority", "exclusive", "stackable_with_coupons", "active", "starts_on",
          "ends_on", "days_of_week", "hours_start", "hours_end", "holidays", "stores",
          "tiers", "members_only", "first_purchase_only", "per_member", "total", "budget")
KIND_FIELDS = (
    "skus", "category_ids", "exclude_skus", "mp_mode", "mp_any", "nth", "percent_off",
    "per_product", "max_applications", "buy_quantity", "get_quantity", "get_skus",
    "reward_pick", "bundle_price", "amount_off", "repeat", "spend", "gift_sku",
    "gift_quantity", "gift_value", "purchase_number", "window_days", "cb_mode", "percent",
    "cap",
    *(f"vol_qty_{i}" for i in range(1, ROWS + 1)),
    *(f"vol_pct_{i}" for i in range(1, ROWS + 1)),
    *(f"step_spend_{i}" for i in range(1, ROWS + 1)),
    *(f"step_off_{i}" for i in range(1, ROWS + 1)),
    *(f"step_pct_{i}" for i in range(1, ROWS + 1)),
    *(f"comp_sku_{i}" for i in range(1, BUNDLE_ROWS + 1)),
    *(f"comp_qty_{i}" for i in range(1, BUNDLE_ROWS + 1)),
)
PREVIEW_FIELDS = ("store_id", "tier", "at", *(f"sku_{i}" for i in range(1, PREVIEW_ROWS + 1)),
                  *(f"qty_{i}" for i in range(1, PREVIEW_ROWS + 1)))

#: Engine paths (exact, or a prefix ending in ".") to the form field they came from.
_PATHS = {
    "config.items": "skus", "config.buy": "skus", "config.get": "get_skus",
    "config.rules": "mp_any", "config.tiers": "vol_qty_1", "config.steps": "step_spend_1",
    "config.components": "comp_sku_1", "config.price_minor": "bundle_price",
    "config.amount_off_minor": "amount_off", "config.spend_minor": "spend",
    "config.gift_product_id": "gift_sku", "config.gift_value_minor": "gift_value",
    "config.cap_minor": "cap", "config.mode": "cb_mode", "schedule.hours": "hours_end",
    "schedule.days_of_week": "days_of_week", "audience.stores": "stores",
    "audience.tiers": "tiers", "limits.budget_minor": "budget",
    "audience.members_only": "members_only",
}
_ROW = re.compile(r"^config\.(tiers|steps|components)\.(\d+)(?:\.(\w+))?")


def field_for(path: str) -> str:
    """The form field a service's field path names (see the module docstring)."""
    row = _ROW.match(path)
    if row:
        kind, index, leaf = row.group(1), int(row.group(2)) + 1, row.group(3) or ""
        if kind == "tiers":
            return f"vol_pct_{index}" if leaf == "percent_off" else f"vol_qty_{index}"
        if kind == "steps":
            if leaf == "percent_off":
                return f"step_pct_{index}"
            return f"step_off_{index}" if leaf in ("amount_off_minor", "cap_minor") \
                else f"step_spend_{index}"
        return f"comp_qty_{index}" if leaf == "quantity" else f"comp_sku_{index}"
    for prefix, name in _PATHS.items():
        if path == prefix or path.startswith(prefix + "."):
            return name
    for prefix in ("config.", "schedule.", "audience.", "limits."):
        if path.startswith(prefix):
            return path.removeprefix(prefix)
    return path


# ---------------------------------------------------------------- reading the form


@dataclass
class Choices:
    """What the form offers: stores (a manager's own), tier codes, categories."""

    stores: list[Store]
    tiers: list[tuple[str, str]]
    categories: list[tuple[str, str]]


def _choices(page: Page, session: Session) -> Choices:
    principal = principal_of(page)
    stores = [s for s in members.list_stores(session)
              if principal.all_stores or s.id in principal.store_ids]
    return Choices(stores, [(t.code, t.name) for t in loyalty.list_tiers(session)],
                   [(str(c.id), c.name) for c in catalog.list_categories(session)])


def _skus(form: Form, page: Page, session: Session, name: str) -> list[str]:
    """Product ids of the SKUs typed in ``name`` (unknown SKUs are named on the form)."""
    ids: list[str] = []
    for sku in split_tags(form.get(name)):
        product = catalog.find_product_by_sku(session, sku=sku)
        if product is None:
            form.add(name, page.gettext(N_("No product has the SKU %(sku)s"), sku=sku))
        else:
            ids.append(str(product.id))
    return ids


def _selector(form: Form, page: Page, session: Session, name: str = "skus",
              categories: bool = True) -> dict[str, Any]:
    selector: dict[str, Any] = {"products": _skus(form, page, session, name)}
    if categories:
        selector["categories"] = [str(c) for c in form.uuid_values(page, "category_ids")]
    if name == "skus" and form.get("exclude_skus"):
        selector["exclude_products"] = _skus(form, page, session, "exclude_skus")
    return selector


def _opt_int(form: Form, page: Page, name: str) -> int | None:
    return whole(form, page, name, required=False)


def _config(kind: str, form: Form, page: Page, session: Session,
            tiers: list[tuple[str, str]]) -> dict[str, Any]:
    """The engine's ``config`` for ``kind`` from the form's fields."""
    config: dict[str, Any] = {"kind": kind}
    if kind == "member_price":
        per_tier: dict[str, int] = {}
        percent = form.get("mp_mode") != "prices"
        for code in [ANY_TIER, *(c for c, _ in tiers)]:
            name = "mp_any" if code == ANY_TIER else f"mp_{code}"
            if not form.get(name):
                continue
            value = whole(form, page, name) if percent else parse_money(form, page, name)
            if value is not None:
                per_tier[code] = value
        rule: dict[str, Any] = {"items": _selector(form, page, session)}
        rule["percent_off" if percent else "prices_minor"] = per_tier
        config["rules"] = [rule]
    elif kind == "nth_item":
        config |= {"items": _selector(form, page, session), "nth": whole(form, page, "nth"),
                   "percent_off": whole(form, page, "percent_off"),
                   "per_product": form.checked("per_product"),
                   "max_applications": _opt_int(form, page, "max_applications")}
    elif kind == "volume":
        config |= {"items": _selector(form, page, session), "tiers": [
            {"min_quantity": whole(form, page, f"vol_qty_{i}"),
             "percent_off": whole(form, page, f"vol_pct_{i}")}
            for i in range(1, ROWS + 1) if form.get(f"vol_qty_{i}") or form.get(f"vol_pct_{i}")]}
    elif kind == "buy_x_get_y":
        config |= {"buy": _selector(form, page, session),
                   "buy_quantity": whole(form, page, "buy_quantity"),
                   "get_quantity": whole(form, page, "get_quantity"),
                   "percent_off": whole(form, page, "percent_off"),
                   "reward_pick": form.get("reward_pick") or "group",
                   "max_applications": _opt_int(form, page, "max_applications")}
        if form.get("get_skus"):
            config["get"] = {"products": _skus(form, page, session, "get_skus")}
    elif kind == "bundle":
        config |= {"components": [
            {"items": {"products": _skus(form, page, session, f"comp_sku_{i}")},
             "quantity": whole(form, page, f"comp_qty_{i}", required=False) or 1}
            for i in range(1, BUNDLE_ROWS + 1) if form.get(f"comp_sku_{i}")],
            "price_minor": parse_money(form, page, "bundle_price"),
            "max_applications": _opt_int(form, page, "max_applications")}
    elif kind == "category_discount":
        config |= {"items": _selector(form, page, session),
                   "percent_off": _opt_int(form, page, "percent_off"),
                   "amount_off_minor": parse_money(form, page, "amount_off", required=False)}
    elif kind == "spend_discount":
        steps = []
        for i in range(1, ROWS + 1):
            if not (form.get(f"step_spend_{i}") or form.get(f"step_off_{i}")
                    or form.get(f"step_pct_{i}")):
                continue
            steps.append({"spend_minor": parse_money(form, page, f"step_spend_{i}"),
                          "amount_off_minor": parse_money(form, page, f"step_off_{i}",
                                                          required=False),
                          "percent_off": _opt_int(form, page, f"step_pct_{i}")})
        config |= {"items": _selector(form, page, session), "steps": steps,
                   "repeat": form.checked("repeat")}
    elif kind == "spend_gift":
        gift = _skus(form, page, session, "gift_sku")
        if not form.get("gift_sku"):
            form.add("gift_sku", page.gettext(N_("This field is required")))
        config |= {"items": _selector(form, page, session),
                   "spend_minor": parse_money(form, page, "spend"),
                   "gift_product_id": gift[0] if gift else None,
                   "gift_quantity": whole(form, page, "gift_quantity", required=False) or 1,
                   "gift_value_minor": parse_money(form, page, "gift_value",
                                                   required=False) or 0}
    elif kind == "cashback":
        config |= {"items": _selector(form, page, session),
                   "purchase_number": whole(form, page, "purchase_number"),
                   "window_days": whole(form, page, "window_days"),
                   "mode": form.get("cb_mode") or "nth", "percent": whole(form, page, "percent"),
                   "cap_minor": parse_money(form, page, "cap", required=False)}
    return {k: v for k, v in config.items() if v is not None}


def _spec(kind: str, form: Form, page: Page, session: Session,
          choices: Choices) -> dict[str, Any]:
    """Everything but ``active``, in the shape of ``PromotionCreate``."""
    hours = []
    if form.get("hours_start") or form.get("hours_end"):
        hours.append({"start": form.get("hours_start"), "end": form.get("hours_end")})
    schedule: dict[str, Any] = {
        "starts_on": form.date_value(page, "starts_on"),
        "ends_on": form.date_value(page, "ends_on"),
        "days_of_week": [int(d) for d in form.getlist("days_of_week") if d.isdigit()],
        "hours": hours, "holidays": form.get("holidays") or "any"}
    audience = {"stores": [str(s) for s in form.uuid_values(page, "stores")],
                "tiers": form.getlist("tiers"), "members_only": form.checked("members_only"),
                "first_purchase_only": form.checked("first_purchase_only")}
    limits = {"per_member": _opt_int(form, page, "per_member"),
              "total": _opt_int(form, page, "total"),
              "budget_minor": parse_money(form, page, "budget", required=False)}
    return {"name": form.get("name"), "priority": whole(form, page, "priority") or 0,
            "exclusive": form.checked("exclusive"),
            "stackable_with_coupons": form.checked("stackable_with_coupons"),
            "schedule": {k: v for k, v in schedule.items() if v is not None},
            "audience": audience, "limits": {k: v for k, v in limits.items() if v is not None},
            "config": _config(kind, form, page, session, choices.tiers)}


def _problems_to_form(page: Page, form: Form, exc: ValidationError) -> None:
    """Pydantic errors from ``PromotionCreate`` (the outer shape) beside their fields."""
    for err in exc.errors():
        path = ".".join(str(p) for p in err.get("loc", ()))
        form.add(field_for(path), err.get("msg", "").removeprefix("Value error, "))


# ---------------------------------------------------------------- the record as a form


def _sku_text(session: Session, ids: Any) -> str:
    wanted = [uuid.UUID(str(i)) for i in ids or ()]
    found = catalog.get_products(session, ids=wanted)
    return ", ".join(found[i].sku for i in wanted if i in found)


def _record_form(page: Page, session: Session, record: PromotionRecord) -> Form:
    """The stored promotion as the values of its form."""
    c, sch, aud = record.config, record.schedule, record.audience
    items = c.get("items") or c.get("buy") or {}
    if c["kind"] == "member_price":
        items = c["rules"][0]["items"]
    values: dict[str, Any] = {
        "name": record.name, "priority": record.priority, "exclusive": record.exclusive,
        "stackable_with_coupons": record.stackable_with_coupons, "active": record.active,
        "starts_on": sch.get("starts_on"), "ends_on": sch.get("ends_on"),
        "days_of_week": sch.get("days_of_week") or [], "holidays": sch.get("holidays", "any"),
        "hours_start": (sch.get("hours") or [{}])[0].get("start", "")[:5],
        "hours_end": (sch.get("hours") or [{}])[0].get("end", "")[:5],
        "stores": aud.get("stores") or [], "tiers": aud.get("tiers") or [],
        "members_only": aud.get("members_only", False),
        "first_purchase_only": aud.get("first_purchase_only", False),
        "per_member": record.per_member_limit, "total": record.total_limit,
        "budget": major(page, record.budget_minor),
        "skus": _sku_text(session, items.get("products")),
        "exclude_skus": _sku_text(session, items.get("exclude_products")),
        "category_ids": items.get("categories") or [],
    }
    for key in ("nth", "percent_off", "per_product", "max_applications", "buy_quantity",
                "get_quantity", "reward_pick", "repeat", "gift_quantity", "purchase_number",
                "window_days", "percent"):
        if key in c:
            values[key] = c[key]
    values |= {"amount_off": major(page, c.get("amount_off_minor")),
               "bundle_price": major(page, c.get("price_minor")),
               "spend": major(page, c.get("spend_minor")),
               "gift_value": major(page, c.get("gift_value_minor")),
               "cap": major(page, c.get("cap_minor")), "cb_mode": c.get("mode")}
    if c.get("get"):
        values["get_skus"] = _sku_text(session, c["get"].get("products"))
    if c.get("gift_product_id"):
        values["gift_sku"] = _sku_text(session, [c["gift_product_id"]])
    if c["kind"] == "member_price":
        rule = c["rules"][0]
        percent = rule.get("percent_off") is not None
        values["mp_mode"] = "percent" if percent else "prices"
        for code, value in (rule.get("percent_off") or rule.get("prices_minor") or {}).items():
            name = "mp_any" if code == ANY_TIER else f"mp_{code}"
            values[name] = value if percent else major(page, value)
    for i, tier in enumerate(c.get("tiers") or [], start=1):
        values |= {f"vol_qty_{i}": tier["min_quantity"], f"vol_pct_{i}": tier["percent_off"]}
    for i, step in enumerate(c.get("steps") or [], start=1):
        values |= {f"step_spend_{i}": major(page, step["spend_minor"]),
                   f"step_off_{i}": major(page, step.get("amount_off_minor")),
                   f"step_pct_{i}": step.get("percent_off")}
    for i, comp in enumerate(c.get("components") or [], start=1):
        values |= {f"comp_sku_{i}": _sku_text(session, comp["items"].get("products")),
                   f"comp_qty_{i}": comp.get("quantity", 1)}
    return Form.initial(values, (*COMMON, *KIND_FIELDS))


def _fields(choices: Choices) -> tuple[str, ...]:
    return (*COMMON, *KIND_FIELDS, *(f"mp_{code}" for code, _ in choices.tiers))


# ---------------------------------------------------------------- pages


def _list_page(page: Page, session: Session, *, form: Form | None = None,
               status: int = 200) -> Response:
    principal = principal_of(page)
    records = promotions.list_promotions(session, actor=principal, include_inactive=True)
    usage = promotions.usage_of(session, promotion_ids=[r.id for r in records if r.limited])
    stores = {s.id: s.name for s in members.list_stores(session, include_inactive=True)}
    return render(page, "promotions/list.html", status=status, records=records, usage=usage,
                  store_names=stores, kind_labels=KIND_LABELS, form=form or Form(),
                  store_ids=lambda r: sorted(promotions.store_ids(r), key=str),
                  may_manage=lambda r: principal.all_stores or (
                      bool(promotions.store_ids(r))
                      and promotions.store_ids(r) <= principal.store_ids))


@router.get("/promotions")
def promotions_page(page: ManagerPage, session: Db) -> Response:
    return _list_page(page, session)


def _form_page(page: Page, session: Session, *, kind: str, form: Form,
               record: PromotionRecord | None = None, status: int = 200,
               result: Preview | None = None, preview_form: Form | None = None) -> Response:
    choices = _choices(page, session)
    principal = principal_of(page)
    stores = promotions.store_ids(record) if record is not None else frozenset()
    may_edit = record is None or principal.all_stores or (
        bool(stores) and stores <= principal.store_ids)
    extra = _preview_context(page, session, preview_form or Form(
        fields=frozenset(PREVIEW_FIELDS))) if record is not None else {}
    return render(page, "promotions/form.html", status=status, kind=kind, form=form,
                  record=record, choices=choices, kind_labels=KIND_LABELS,
                  kind_hints=KIND_HINTS, rows=range(1, ROWS + 1), may_edit=may_edit,
                  weekdays=[(str(n), page.gettext(label)) for n, label in WEEKDAYS],
                  store_options=[(str(s.id), s.name) for s in choices.stores],
                  bundle_rows=range(1, BUNDLE_ROWS + 1), preview=result, **extra)


@router.get("/promotions/new")
def new_promotion_page(page: ManagerPage, session: Db,
                       kind: Annotated[str, Query(max_length=40)] = "") -> Response:
    if kind not in KINDS:
        return render(page, "promotions/kinds.html", kinds=KINDS, kind_labels=KIND_LABELS,
                      kind_hints=KIND_HINTS)
    principal = principal_of(page)
    initial: dict[str, Any] = {"priority": 100, "stackable_with_coupons": True, "active": True,
                               "holidays": "any", "mp_mode": "percent", "reward_pick": "group",
                               "cb_mode": "nth", "get_quantity": 1, "gift_quantity": 1}
    if not principal.all_stores:
        initial["stores"] = sorted(str(s) for s in principal.store_ids)
    return _form_page(page, session, kind=kind, form=Form.initial(initial, COMMON))


@router.post("/promotions/new")
def create_promotion(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    choices = _choices(page, session)
    form = Form.posted(data, _fields(choices))
    kind = form.get("kind")
    if kind not in KINDS:
        return redirect(page, "/promotions/new")
    spec = _spec(kind, form, page, session, choices) | {"active": form.checked("active")}
    body: PromotionCreate | None = None
    if form.ok:
        try:
            body = PromotionCreate.model_validate(spec)
        except ValidationError as exc:
            _problems_to_form(page, form, exc)
    done, status = run(page, form, lambda: promotions.create_promotion(
        session, clock=page.app.clock, actor=principal_of(page),
        data=body or PromotionCreate.model_validate(spec)), field_for)
    if done is None:
        session.rollback()
        return _form_page(page, session, kind=kind, form=form, status=status)
    session.commit()
    return redirect(page, f"/promotions/{done.id}", flash="promotion_created")


def _record(page: Page, session: Session, promotion_id: uuid.UUID) -> PromotionRecord:
    return promotions.get_promotion(session, actor=principal_of(page),
                                    promotion_id=promotion_id)


@router.get("/promotions/preview")
def preview_page(page: ManagerPage, session: Db) -> Response:
    """The basket preview against every active promotion (query: sku_N, qty_N, …)."""
    form = Form(values={k: v for k, v in page.request.query_params.items()
                        if k in PREVIEW_FIELDS}, fields=frozenset(PREVIEW_FIELDS))
    asked = bool(form.values)
    context = _preview_context(page, session, form)
    result = preview(page, session, form, None) if asked else None
    return render(page, "promotions/preview.html", preview=result, **context)


@router.get("/promotions/{promotion_id}")
def promotion_page(page: ManagerPage, session: Db, promotion_id: uuid.UUID) -> Response:
    record = _record(page, session, promotion_id)
    form = Form(values={k: v for k, v in page.request.query_params.items()
                        if k in PREVIEW_FIELDS}, fields=frozenset(PREVIEW_FIELDS))
    asked = bool(form.values)
    _preview_context(page, session, form)  # the defaults: the viewer's store, now
    result = preview(page, session, form, record) if asked else None
    return _form_page(page, session, kind=record.kind, form=_record_form(page, session, record),
                      record=record, result=result, preview_form=form)


@router.post("/promotions/{promotion_id}")
def save_promotion(page: ManagerPage, session: Db, data: PostedForm,
                   promotion_id: uuid.UUID) -> Response:
    record = _record(page, session, promotion_id)
    choices = _choices(page, session)
    form = Form.posted(data, _fields(choices))
    spec = _spec(record.kind, form, page, session, choices)
    body: PromotionUpdate | None = None
    if form.ok:
        try:
            body = PromotionUpdate.model_validate(spec)
        except ValidationError as exc:
            _problems_to_form(page, form, exc)
    done, status = run(page, form, lambda: promotions.update_promotion(
        session, clock=page.app.clock, actor=principal_of(page), promotion_id=promotion_id,
        data=body or PromotionUpdate()), field_for)
    if done is None:
        session.rollback()
        return _form_page(page, session, kind=record.kind, form=form,
                          record=_record(page, session, promotion_id), status=status)
    session.commit()
    return redirect(page, f"/promotions/{promotion_id}", flash="promotion_saved")


@router.post("/promotions/{promotion_id}/active")
def toggle_promotion(page: ManagerPage, session: Db, data: PostedForm,
                     promotion_id: uuid.UUID) -> Response:
    form = Form.posted(data, ())
    active = form.get("active") == "1"
    done, status = run(page, form, lambda: promotions.set_active(
        session, clock=page.app.clock, actor=principal_of(page), promotion_id=promotion_id,
        active=active))
    if done is None:
        session.rollback()
        return _list_page(page, session, form=form, status=status)
    session.commit()
    return redirect(page, "/promotions",
                    flash="promotion_started" if active else "promotion_stopped")


# ---------------------------------------------------------------- preview


@dataclass(frozen=True)
class PreviewLine:
    sku: str
    name: str
    quantity: int
    original_minor: int
    discount_minor: int
    total_minor: int


@dataclass(frozen=True)
class Preview:
    """A priced basket as the page shows it."""

    lines: list[PreviewLine]
    priced: PricedBasket
    names: dict[uuid.UUID, str]
    gift_names: dict[uuid.UUID, str]
    hints: list[str]
    moment: datetime


def _preview_context(page: Page, session: Session, form: Form) -> dict[str, Any]:
    stores = members.list_stores(session)
    tiers = loyalty.list_tiers(session)
    if not form.get("store_id") and stores:
        principal = principal_of(page)
        mine = [s for s in stores if principal.all_stores or s.id in principal.store_ids]
        form.values["store_id"] = str((mine or stores)[0].id)
    if not form.get("at"):
        form.values["at"] = page.app.clock.now().astimezone(page.tz).strftime("%Y-%m-%dT%H:%M")
    return {"preview_form": form, "preview_stores": stores,
            "preview_tiers": [(t.code, t.name) for t in tiers],
            "preview_rows": range(1, PREVIEW_ROWS + 1)}


def preview(page: Page, session: Session, form: Form,
            record: PromotionRecord | None) -> Preview | None:
    """Price the typed basket with the active promotions (and ``record``, active or not)."""
    store: Store | None = None
    store_id = form.uuid_value(page, "store_id")
    if store_id is not None:
        try:
            store = members.get_store(session, store_id=store_id)
        except NotFound:
            form.add("store_id", page.gettext(N_("Choose one of the options")))
    zone = ZoneInfo(store.timezone) if store else page.tz
    try:
        moment = datetime.fromisoformat(form.get("at")).replace(tzinfo=zone)
    except ValueError:
        form.add("at", page.gettext(N_("Enter a date")))
        moment = page.app.clock.now()
    basket: list[BasketLine] = []
    products = {}
    for i in range(1, PREVIEW_ROWS + 1):
        sku = form.get(f"sku_{i}")
        if not sku:
            continue
        product = catalog.find_product_by_sku(session, sku=sku)
        quantity = whole(form, page, f"qty_{i}", required=False) or 1
        if product is None:
            form.add(f"sku_{i}", page.gettext(N_("No product has the SKU %(sku)s"), sku=sku))
            continue
        if not 1 <= quantity <= 9_999:
            form.add(f"qty_{i}", page.gettext(N_("Must be at least %(limit)s"), limit=1))
            continue
        products[str(i)] = product
        basket.append(BasketLine(str(i), product.id, product.category_id, quantity,
                                 product.price_minor))
    if not basket:
        form.add("sku_1", page.gettext(N_("Type at least one SKU")))
    if not form.ok or store is None:
        return None
    listed: dict[uuid.UUID, Promotion] = dict(promotions.book(session).book.promotions)
    if record is not None:
        listed[record.id] = promotions.to_engine(record)
    tier = form.get("tier")
    member = None if tier in ("", "guest") else MemberFacts(
        member_id=uuid.UUID(int=1), joined_on=moment.date() - timedelta(days=365),
        tier_code=None if tier == "member" else tier, previous_purchases=1)
    priced = price_basket(basket, context=PricingContext(
        occurred_at=moment, store_id=store.id, store_timezone=store.timezone, member=member),
        book=PromotionBook(listed.values()))
    currency = page.app.settings.currency
    hints = [promotions.near_miss_texts(m, currency=currency).get(page.language, "")
             for m in priced.near_misses]
    gifts = catalog.get_products(session, ids=[g.product_id for g in priced.gifts])
    return Preview(
        lines=[PreviewLine(products[ln.line_id].sku, products[ln.line_id].name, ln.quantity,
                           ln.original_minor, ln.discount_minor, ln.total_minor)
               for ln in priced.lines],
        priced=priced, names={p.id: p.name for p in listed.values()},
        gift_names={k: v.name for k, v in gifts.items()}, hints=[h for h in hints if h],
        moment=moment)


__all__ = ["field_for", "preview", "router"]
