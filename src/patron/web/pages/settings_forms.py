"""Form helpers shared by the programme-settings and promotions pages.

The house way (``web.forms``) with two additions these pages need: a refusal for the
caller's role is shown on the form as a clear message (403) instead of the bare error
page, because these pages are shown read-only to managers and a stale tab may still post;
and range errors name the limit ("Must be at least 0") rather than "not valid".
Money is typed in major units and kept in minor units (``parse_money``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Depends
from pydantic import BaseModel, ValidationError

from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.core.errors import PatronError, PermissionDenied
from patron.core.money import minor_digits
from patron.web.deps import Page, SignedInPage, principal_of
from patron.web.forms import PYDANTIC_MESSAGES, Form, translate_error
from patron.web.i18n import N_
from patron.web.pages.catalog import parse_price

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: The services' refusals these pages show, listed so the catalogue translates them.
SERVICE_MESSAGES = (
    N_("This needs the owner role"), N_("This needs the manager role"),
    N_("The threshold must be above every lower tier's"),
    N_("The threshold must be below every higher tier's"),
    N_("Threshold cannot be negative"), N_("discount_pct is between 0 and 100"),
    N_("No such tier"), N_("Unknown tier"), N_("Unknown product"),
    N_("Another plan is sold through this product"),
    N_("duration_days is between 1 and 3660"),
    N_("Bonus must be between 0 and the top-up amount"),
    N_("The rule must end after it starts"), N_("No such bonus rule"),
    N_("Quiet hours must end at another time than they start"),
    N_("The weekly cap is between 0 and 100"), N_("Delivery attempts are between 1 and 50"),
    N_("Choose SMS or e-mail"), N_("Enter a valid e-mail address"),
    N_("No such coupon template"), N_("A fixed coupon needs amount_minor"),
    N_("A percent coupon needs percent (1-100)"), N_("A fixed window needs ends_at"),
    N_("The window must end after it starts"),
    N_("Say for how many days a coupon is valid"),
    N_("A coupon for everything takes no target_ids"), N_("target_ids has duplicates"),
    N_("target_ids names an unknown category"), N_("target_ids names an unknown product"),
    N_("No such promotion"),
    N_("Only the owner runs a promotion in every store; name your stores in "
       "audience.stores"),
    N_("audience.stores names a store you don't manage"),
    N_("No product has this id"), N_("No such multiplier"),
    N_("pct must be between 0 and 10000"), N_("The period must end after it starts"),
    N_("target_id is needed for a category or product"),
)

#: Range errors name their limit (``%(limit)s``), so "a negative rate" says what is allowed.
RANGE_MESSAGES = {
    "greater_than_equal": ("ge", N_("Must be at least %(limit)s")),
    "greater_than": ("gt", N_("Must be more than %(limit)s")),
    "less_than_equal": ("le", N_("Must be at most %(limit)s")),
    "less_than": ("lt", N_("Must be less than %(limit)s")),
}

#: Sentences for the stable codes of these services' refusals whose English text carries
#: values (f-strings), so the Chinese page never falls back to English.
CODE_MESSAGES = {
    "duplicate": N_("This is already taken"),
    "conflict": N_("This conflicts with the current data"),
    "tier_order": N_("Tier thresholds must rise with the rank"),
    "unknown_product": N_("No product has this id"),
    "unknown_store": N_("Unknown store"),
    "less_than_equal": N_("The value is too large"),
    "less_than": N_("The value is too large"),
    "greater_than_equal": N_("The value is too small"),
    "greater_than": N_("The value is too small"),
    "too_short": N_("This field is required"),
    "missing": N_("This field is required"),
    "value_error": N_("This value is not valid"),
    "int_parsing": N_("Enter a whole number"),
    "template_in_use": N_("This template has issued coupons: its discount terms cannot "
                          "change (create a new template instead)"),
}


def _translated(page: Page, message: str, code: str) -> str:
    text = translate_error(page, message, code)
    if text == message and page.language != "en" and code in CODE_MESSAGES:
        return page.gettext(CODE_MESSAGES[code])
    return text


def manager_page(page: SignedInPage) -> Page:
    """Settings and promotions are for managers and owners; a cashier gets the 403 page."""
    require_role(principal_of(page), Role.MANAGER)
    return page


ManagerPage = Annotated[Page, Depends(manager_page)]


def is_owner(page: Page) -> bool:
    return principal_of(page).role is Role.OWNER


def is_manager(page: Page) -> bool:
    return principal_of(page).role in (Role.MANAGER, Role.OWNER)


def add_validation(page: Page, form: Form, exc: ValidationError,
                   aliases: Mapping[str, str] | None = None) -> None:
    """Pydantic's errors beside the fields they name, with the limit for range errors."""
    aliases = aliases or {}
    for err in exc.errors():
        loc = err.get("loc", ())
        name = str(loc[0]) if loc else None
        name = aliases.get(name or "", name)
        kind = str(err.get("type", ""))
        ctx = err.get("ctx") or {}
        if kind in RANGE_MESSAGES and RANGE_MESSAGES[kind][0] in ctx:
            key, message = RANGE_MESSAGES[kind]
            form.add(name, page.gettext(message, limit=ctx[key]))
        else:
            form.add(name, page.gettext(PYDANTIC_MESSAGES.get(kind,
                                                              N_("This value is not valid"))))


def validated(page: Page, form: Form, model: type[M], values: Mapping[str, Any],
              aliases: Mapping[str, str] | None = None) -> M | None:
    """``model`` built from ``values``, or None with the errors on ``form``."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        add_validation(page, form, exc, aliases)
        return None


Aliases = Mapping[str, str] | Callable[[str], str] | None


def _rename(aliases: Aliases, name: str) -> str:
    if aliases is None:
        return name
    if callable(aliases):
        return aliases(name)
    return aliases.get(name, name)


def run(page: Page, form: Form, action: Callable[[], T],
        aliases: Aliases = None) -> tuple[T | None, int]:
    """Run a service call unless the form has errors; any refusal lands on the form.

    Returns the result (or None) and the status to render the form with: 403 when the
    service refused the caller's role, 422 for bad input.
    """
    if not form.ok:
        return None, 422
    try:
        return action(), 200
    except PermissionDenied as exc:
        form.add(None, _translated(page, exc.message, exc.code))
        return None, 403
    except ValidationError as exc:
        add_validation(page, form, exc, aliases if isinstance(aliases, Mapping) else None)
    except PatronError as exc:
        if not exc.problems:
            form.add(None, _translated(page, exc.message, exc.code))
        for problem in exc.problems:
            form.add(_rename(aliases, problem.field),
                     _translated(page, problem.message, problem.code))
    return None, 422


def parse_money(form: Form, page: Page, name: str, *, required: bool = True) -> int | None:
    """An amount typed in major units ("42.50") as minor units; empty is None unless
    ``required`` (then the field says so)."""
    if not form.get(name):
        if required:
            form.add(name, page.gettext(N_("This field is required")))
        return None
    return parse_price(form, page, name)


def major(page: Page, amount_minor: int | None) -> str:
    """Minor units as the major-unit text a form shows ("42.5" -> "42.50")."""
    if amount_minor is None:
        return ""
    digits = minor_digits(page.app.settings.currency)
    return f"{Decimal(amount_minor).scaleb(-digits):.{digits}f}"


def whole(form: Form, page: Page, name: str, *, required: bool = True) -> int | None:
    """A whole number field; empty is an error when ``required``."""
    if not form.get(name):
        if required:
            form.add(name, page.gettext(N_("This field is required")))
        return None
    return form.int_value(page, name)


def local_start(day: date | None, tz: ZoneInfo) -> datetime | None:
    """The first instant of a local day (aware)."""
    return None if day is None else datetime.combine(day, time(0), tzinfo=tz)


def local_end(day: date | None, tz: ZoneInfo) -> datetime | None:
    """The instant a local day ends (the next day's start): the exclusive end of a window."""
    return None if day is None else datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def local_day(at: datetime | None, tz: ZoneInfo, *, end: bool = False) -> date | None:
    """The local day of an instant; for an exclusive end, the last day it covers."""
    if at is None:
        return None
    moment = at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo("UTC"))
    day = moment.astimezone(tz).date()
    return day - timedelta(days=1) if end else day
