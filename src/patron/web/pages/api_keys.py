"""API keys for POS terminals: one store each; the secret is shown once, on creation."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth import service as auth
from patron.members import service as members
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.routing import web_router
from patron.web.templating import redirect, render

router = web_router()

FIELDS = ("name", "store_id")


def _render(page: Page, session: Session, form: Form, *, status: int = 200,
            secret: str | None = None) -> Response:
    principal = principal_of(page)
    keys = auth.list_api_keys(session, actor=principal)
    all_stores = members.list_stores(session, include_inactive=True)
    return render(page, "api_keys.html", status=status, keys=keys, form=form, secret=secret,
                  stores=[s for s in all_stores if s.active and principal.can_access_store(s.id)],
                  store_names={s.id: s.name for s in all_stores})


@router.get("/api-keys")
def keys_page(page: SignedInPage, session: Db) -> Response:
    principal = principal_of(page)
    return _render(page, session, Form.initial({"store_id": principal.default_store_id}, FIELDS))


@router.post("/api-keys")
def create_key(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    """Issue a key and show its secret in this response only (it is never stored)."""
    form = Form.posted(data, FIELDS)
    store_id = form.uuid_value(page, "store_id")
    if store_id is None and "store_id" not in form.errors:
        form.add("store_id", page.gettext("This field is required"))
    created = attempt(page, form, lambda: auth.create_api_key(
        session, clock=page.app.clock, actor=principal_of(page),
        store_id=store_id or uuid.UUID(int=0), name=form.get("name")))
    if created is None:
        session.rollback()
        return _render(page, session, form, status=422)
    session.commit()
    _key, secret = created
    return _render(page, session, Form(fields=frozenset(FIELDS)), secret=secret)


@router.post("/api-keys/{key_id}/revoke")
def revoke_key(page: SignedInPage, session: Db, _data: PostedForm,
               key_id: uuid.UUID) -> Response:
    auth.revoke_api_key(session, clock=page.app.clock, actor=principal_of(page), key_id=key_id)
    session.commit()
    return redirect(page, "/api-keys", flash="key_revoked")
