"""Staff accounts: list, create, change role / stores / language / password, deactivate.

Who may do what lives in ``auth.service`` (owners manage everyone; a manager manages the
cashiers of their own stores). The page only offers what the viewer's role suggests, and
shows the service's refusal when someone tries more.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.auth.principal import Principal
from patron.members import service as members
from patron.members.models import Store
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.routing import web_router
from patron.web.templating import redirect, render

router = web_router()

CREATE_FIELDS = ("username", "display_name", "password", "role", "store_ids", "language")
EDIT_FIELDS = ("display_name", "role", "store_ids", "language", "password")


def _roles_offered(principal: Principal) -> list[str]:
    if principal.role is Role.OWNER:
        return [Role.CASHIER.value, Role.MANAGER.value, Role.OWNER.value]
    return [Role.CASHIER.value]


def _stores_offered(session: Session, principal: Principal) -> list[Store]:
    return [s for s in members.list_stores(session) if principal.can_access_store(s.id)]


def _role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _render_list(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    principal = principal_of(page)
    users = auth.list_users(session, actor=principal)
    return render(page, "staff/list.html", status=status, users=users, form=form,
                  roles=_roles_offered(principal), stores=_stores_offered(session, principal),
                  store_names={s.id: s.name for s in members.list_stores(
                      session, include_inactive=True)})


@router.get("/staff")
def staff_page(page: SignedInPage, session: Db) -> Response:
    principal = principal_of(page)
    initial = {"role": Role.CASHIER.value,
               "store_ids": [str(principal.default_store_id)] if principal.default_store_id
               else []}
    return _render_list(page, session, Form.initial(initial, CREATE_FIELDS))


@router.post("/staff")
def create_staff(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    principal = principal_of(page)
    form = Form.posted(data, CREATE_FIELDS)
    role = _role(form.get("role"))
    if role is None:
        form.add("role", page.gettext("Choose one of the options"))
    store_ids = form.uuid_values(page, "store_ids")
    user = attempt(page, form, lambda: auth.create_user(
        session, clock=page.app.clock, actor=principal, username=form.get("username"),
        display_name=form.get("display_name"), password=form.values.get("password", ""),
        role=role or Role.CASHIER, store_ids=store_ids, language=form.text("language")))
    if user is None:
        session.rollback()
        form.values.pop("password", None)
        return _render_list(page, session, form, status=422)
    session.commit()
    return redirect(page, "/staff", flash="user_created")


def _render_edit(page: Page, session: Session, user: User, form: Form,
                 status: int = 200) -> Response:
    principal = principal_of(page)
    return render(page, "staff/edit.html", status=status, user=user, form=form,
                  roles=_roles_offered(principal), stores=_stores_offered(session, principal),
                  is_self=user.id == principal.user_id)


@router.get("/staff/{user_id}")
def edit_staff_page(page: SignedInPage, session: Db, user_id: uuid.UUID) -> Response:
    user = auth.get_user_for(session, actor=principal_of(page), user_id=user_id)
    form = Form.initial({"display_name": user.display_name, "role": user.role,
                         "store_ids": user.store_ids, "language": user.language}, EDIT_FIELDS)
    return _render_edit(page, session, user, form)


@router.post("/staff/{user_id}")
def edit_staff(page: SignedInPage, session: Db, data: PostedForm,
               user_id: uuid.UUID) -> Response:
    """Save the form; role and stores are sent only when they changed (a manager may edit
    their own name without the rules for changing managers coming into play)."""
    principal = principal_of(page)
    user = auth.get_user_for(session, actor=principal, user_id=user_id)
    form = Form.posted(data, EDIT_FIELDS)
    role = _role(form.get("role", user.role))
    if role is None:
        form.add("role", page.gettext("Choose one of the options"))
    store_ids = form.uuid_values(page, "store_ids")
    role_changed = role is not None and role.value != user.role
    stores_changed = set(store_ids) != set(user.store_ids)
    saved = attempt(page, form, lambda: auth.update_user(
        session, clock=page.app.clock, actor=principal, user_id=user_id,
        display_name=form.get("display_name"),
        role=role if role_changed or stores_changed else None,
        store_ids=store_ids if role_changed or stores_changed else None,
        language=form.text("language"), password=form.text("password")))
    if saved is None:
        session.rollback()
        form.values.pop("password", None)
        user = auth.get_user_for(session, actor=principal, user_id=user_id)
        return _render_edit(page, session, user, form, status=422)
    session.commit()
    return redirect(page, "/staff", flash="user_saved")


@router.post("/staff/{user_id}/active")
def set_active(page: SignedInPage, session: Db, data: PostedForm,
               user_id: uuid.UUID) -> Response:
    """Deactivate (ends their sessions at once) or reactivate an account."""
    active = Form.posted(data, ("active",)).get("active") == "1"
    auth.update_user(session, clock=page.app.clock, actor=principal_of(page), user_id=user_id,
                     active=active)
    session.commit()
    return redirect(page, "/staff", flash="user_saved")
