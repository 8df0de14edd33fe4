"""Stores of the brand: the owner opens and edits stores; a manager may edit their own."""

from __future__ import annotations

import functools
import uuid
import zoneinfo
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.enums import Role
from patron.members import service as members
from patron.members.models import Store
from patron.members.schemas import StoreCreate, StoreUpdate
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.routing import web_router
from patron.web.templating import redirect, render

router = web_router()

CREATE_FIELDS = ("code", "name", "address", "timezone", "phone")
EDIT_FIELDS = ("name", "address", "timezone", "phone", "active")


@functools.cache
def timezones() -> list[str]:
    """The IANA zone names offered as suggestions in the time zone field."""
    return sorted(z for z in zoneinfo.available_timezones() if "/" in z and
                  not z.startswith(("Etc/", "SystemV/", "US/")))


def _render_list(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    principal = principal_of(page)
    stores = members.list_stores(session, include_inactive=principal.role is Role.OWNER)
    return render(page, "stores/list.html", status=status, stores=stores, form=form,
                  timezones=timezones())


@router.get("/stores")
def stores_page(page: SignedInPage, session: Db) -> Response:
    form = Form.initial({"timezone": page.app.settings.default_timezone}, CREATE_FIELDS)
    return _render_list(page, session, form)


@router.post("/stores")
def create_store(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, CREATE_FIELDS)
    store = attempt(page, form, lambda: members.create_store(
        session, clock=page.app.clock, actor=principal_of(page),
        data=StoreCreate.model_validate({
            "code": form.get("code"), "name": form.get("name"), "address": form.get("address"),
            "timezone": form.get("timezone") or page.app.settings.default_timezone,
            "phone": form.text("phone")})))
    if store is None:
        session.rollback()
        return _render_list(page, session, form, status=422)
    session.commit()
    return redirect(page, "/stores", flash="store_created")


def _render_edit(page: Page, store: Store, form: Form, status: int = 200) -> Response:
    return render(page, "stores/edit.html", status=status, store=store, form=form,
                  timezones=timezones())


@router.get("/stores/{store_id}")
def edit_store_page(page: SignedInPage, session: Db, store_id: uuid.UUID) -> Response:
    store = members.get_store(session, store_id=store_id)
    form = Form.initial({"name": store.name, "address": store.address,
                         "timezone": store.timezone, "phone": store.phone,
                         "active": store.active}, EDIT_FIELDS)
    return _render_edit(page, store, form)


@router.post("/stores/{store_id}")
def edit_store(page: SignedInPage, session: Db, data: PostedForm,
               store_id: uuid.UUID) -> Response:
    """Save; ``active`` is sent only by the owner's form (the service refuses anyone else)."""
    principal = principal_of(page)
    form = Form.posted(data, EDIT_FIELDS)
    changes: dict[str, Any] = {"name": form.get("name"), "address": form.get("address"),
                               "timezone": form.get("timezone"), "phone": form.text("phone")}
    if "active_shown" in form.values:
        changes["active"] = form.checked("active")
    saved = attempt(page, form, lambda: members.update_store(
        session, clock=page.app.clock, actor=principal, store_id=store_id,
        data=StoreUpdate.model_validate(changes)))
    if saved is None:
        session.rollback()
        return _render_edit(page, members.get_store(session, store_id=store_id), form, 422)
    session.commit()
    return redirect(page, "/stores", flash="store_saved")
