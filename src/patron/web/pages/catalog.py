"""The catalogue: products and categories (with their replenishment cycles) for the admin.

Managers and owners create and edit; everyone signed in may look. Prices are typed in the
currency's major units ("42.50") and stored as integer minor units; a product is taken off
sale, never deleted (past sales point at it). Spreadsheet import stays on the API
(``POST /api/v1/catalog/products/import``) and the CLI.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.enums import Role
from patron.catalog import service as catalog
from patron.catalog.models import Product
from patron.catalog.schemas import CategoryCreate, ProductCreate, ProductUpdate
from patron.core.errors import ValidationFailed
from patron.core.money import minor_digits
from patron.web import nav
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import FLASHES, redirect, render

router = web_router()
nav.register(nav.NavItem("catalog", "/catalog", N_("Catalogue"), "box"), after="members")
FLASHES.update({"product_created": N_("Product created."), "product_saved": N_("Product saved."),
                "category_created": N_("Category created.")})

PRODUCT_FIELDS = ("sku", "name", "category_id", "price", "replenish_days", "active")
CATEGORY_FIELDS = ("code", "name", "replenish_days")
PAGE_SIZE = 50


def parse_price(form: Form, page: Page, name: str = "price") -> int | None:
    """Major units as typed ("42.5", "42.50", "4250") to exact minor units."""
    raw = form.get(name).replace(",", "").replace("¥", "").replace("$", "").strip()
    digits = minor_digits(page.app.settings.currency)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        form.add(name, page.gettext(N_("Type a price such as 42.50")))
        return None
    scaled = value * (10 ** digits)
    if value < 0 or scaled != scaled.to_integral_value():
        form.add(name, page.gettext(N_("Type a price such as 42.50")))
        return None
    return int(scaled)


def _days(form: Form, page: Page, name: str = "replenish_days") -> int | None:
    raw = form.get(name)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        form.add(name, page.gettext(N_("A whole number of days, at least 1")))
        return None
    return int(raw)


def _list(page: Page, session: Session, *, q: str, pg: int, product_form: Form,
          category_form: Form, status: int = 200) -> Response:
    products, total = catalog.list_products(session, query=catalog.ProductQuery(
        q=q or None, page=pg, page_size=PAGE_SIZE))
    categories = catalog.list_categories(session)
    return render(page, "catalog/list.html", status=status, products=products, total=total,
                  q=q, pg=pg, pages=max(1, -(-total // PAGE_SIZE)), categories=categories,
                  by_id={c.id: c for c in categories}, product_form=product_form,
                  category_form=category_form,
                  can_edit=principal_of(page).role in (Role.MANAGER, Role.OWNER))


@router.get("/catalog")
def catalog_page(page: SignedInPage, session: Db,
                 q: Annotated[str, Query(max_length=100)] = "",
                 pg: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    return _list(page, session, q=q, pg=pg,
                 product_form=Form.initial({"active": True}, PRODUCT_FIELDS),
                 category_form=Form(fields=frozenset(CATEGORY_FIELDS)))


def _product_data(form: Form, page: Page) -> dict[str, Any] | None:
    price = parse_price(form, page)
    days = _days(form, page)
    if not form.ok:
        return None
    category: uuid.UUID | None = None
    if form.get("category_id"):
        try:
            category = uuid.UUID(form.get("category_id"))
        except ValueError:
            form.add("category_id", page.gettext(N_("Choose a category")))
            return None
    return {"sku": form.get("sku"), "name": form.get("name"), "category_id": category,
            "price_minor": price, "replenish_days": days, "active": form.checked("active")}


@router.post("/catalog/products")
def create_product(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, PRODUCT_FIELDS)
    values = _product_data(form, page)
    made = None
    if values is not None:
        if values["category_id"] is None:
            form.add("category_id", page.gettext(N_("Choose a category")))
        else:
            made = attempt(page, form, lambda: catalog.create_product(
                session, clock=page.app.clock, actor=principal_of(page),
                data=ProductCreate.model_validate(values)),
                aliases={"price_minor": "price"})
    if made is None:
        session.rollback()
        return _list(page, session, q="", pg=1, product_form=form,
                     category_form=Form(fields=frozenset(CATEGORY_FIELDS)), status=422)
    session.commit()
    return redirect(page, "/catalog", flash="product_created")


@router.post("/catalog/categories")
def create_category(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, CATEGORY_FIELDS)
    days = _days(form, page)
    made = None
    if form.ok:
        made = attempt(page, form, lambda: catalog.create_category(
            session, clock=page.app.clock, actor=principal_of(page),
            data=CategoryCreate.model_validate({"code": form.get("code"),
                                                "name": form.get("name"),
                                                "replenish_days": days})))
    if made is None:
        session.rollback()
        return _list(page, session, q="", pg=1, category_form=form, status=422,
                     product_form=Form.initial({"active": True}, PRODUCT_FIELDS))
    session.commit()
    return redirect(page, "/catalog", flash="category_created")


def _edit(page: Page, session: Session, product: Product, form: Form,
          status: int = 200) -> Response:
    return render(page, "catalog/edit.html", status=status, product=product, form=form,
                  categories=catalog.list_categories(session),
                  can_edit=principal_of(page).role in (Role.MANAGER, Role.OWNER))


@router.get("/catalog/products/{product_id}")
def product_page(page: SignedInPage, session: Db, product_id: uuid.UUID) -> Response:
    product = catalog.get_product(session, product_id=product_id)
    price = Decimal(product.price_minor).scaleb(-minor_digits(page.app.settings.currency))
    form = Form.initial({"sku": product.sku, "name": product.name,
                         "category_id": product.category_id, "price": f"{price:f}",
                         "replenish_days": product.replenish_days,
                         "active": product.active}, PRODUCT_FIELDS)
    return _edit(page, session, product, form)


@router.post("/catalog/products/{product_id}")
def save_product(page: SignedInPage, session: Db, data: PostedForm,
                 product_id: uuid.UUID) -> Response:
    form = Form.posted(data, PRODUCT_FIELDS)
    values = _product_data(form, page)
    saved = None
    if values is not None:
        if values["category_id"] is None:
            values.pop("category_id")
        saved = attempt(page, form, lambda: catalog.update_product(
            session, clock=page.app.clock, actor=principal_of(page), product_id=product_id,
            data=ProductUpdate.model_validate(values)), aliases={"price_minor": "price"})
    if saved is None:
        session.rollback()
        return _edit(page, session, catalog.get_product(session, product_id=product_id),
                     form, 422)
    session.commit()
    return redirect(page, "/catalog", flash="product_saved")


__all__ = ["ValidationFailed", "router"]
