"""Forms of the admin: what the user typed, and the errors to show next to each field.

A posted form is parsed into service input here; when parsing or the service refuses it
(``PatronError`` with ``field`` / ``problems``, or a Pydantic ``ValidationError``), the
page is rendered again with the values as typed and each message beside the field it
names. Messages for fields the form does not show go to the banner at the top.

Service messages are English sentences. The Chinese page shows the catalogue's
translation when the sentence is a fixed one, else a generic sentence for the error's
stable ``code``, and only as a last resort the English text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from pydantic import ValidationError
from starlette.datastructures import FormData

from patron.core.errors import PatronError, PermissionDenied
from patron.web.deps import Page
from patron.web.i18n import N_

T = TypeVar("T")

#: Fields whose surrounding spaces matter.
UNTRIMMED = frozenset({"password"})

#: Fixed sentences the services raise; listed so the catalogue translates them.
SERVICE_MESSAGES = (
    N_("A member with this phone number already exists"),
    N_("Another member has this phone number"),
    N_("Member is not active"),
    N_("Only active members can be edited"),
    N_("Only active members can be merged"),
    N_("No member found"),
    N_("No such API key"),
    N_("No such member"),
    N_("No such store"),
    N_("No such user"),
    N_("Only an owner can create or change managers and owners"),
    N_("Only staff users can do this"),
    N_("This belongs to a store you don't have access to"),
    N_("This user works in a store you don't have access to"),
    N_("You cannot change your own role or deactivate yourself"),
    N_("A cashier works in exactly one store"),
    N_("A manager runs at least one store"),
    N_("A member cannot be merged into itself"),
    N_("A tag has at most 64 characters"),
    N_("An owner has every store; give no store_ids"),
    N_("Birthday day is required with a birthday"),
    N_("Birthday month is required with a birthday"),
    N_("Calendar must be 'solar' or 'lunar'"),
    N_("Choose the member's home store"),
    N_("Display name is required"),
    N_("Give the key a name (e.g. the till it is for)"),
    N_("Language must be 'en' or 'zh_CN'"),
    N_("Lunar day must be between 1 and 30"),
    N_("Month must be between 1 and 12"),
    N_("Name is required"),
    N_("No member has this card number"),
    N_("Only lunar birthdays have leap months"),
    N_("Password must have at least 8 characters"),
    N_("Password must have at most 256 characters"),
    N_("Phone number is required"),
    N_("Tags cannot be empty"),
    N_("Unknown store"),
    N_("Year must be between 1900 and 2100"),
    N_("Username: 3-64 letters, digits or . _ @ -"),
    N_("You are not allowed to do this"),
)

#: Generic sentences per error code, for messages that carry values (f-strings).
CODE_MESSAGES = {
    "invalid_phone": N_("Not a valid phone number"),
    "duplicate_phone": N_("A member with this phone number already exists"),
    "username_taken": N_("This username is taken"),
    "store_code_taken": N_("This store code is taken"),
    "unknown_store": N_("Unknown store"),
    "required": N_("This field is required"),
    "not_found": N_("Not found"),
    "not_active": N_("Member is not active"),
    "forbidden": N_("You are not allowed to do this"),
    "invalid": N_("This value is not valid"),
}

#: Sentences for Pydantic's error types (the schema checks that run before a service).
PYDANTIC_MESSAGES = {
    "missing": N_("This field is required"),
    "string_too_short": N_("This field is required"),
    "string_too_long": N_("This is too long"),
    "too_long": N_("Too many entries"),
    "value_error": N_("Enter a valid e-mail address"),
    "int_parsing": N_("Enter a whole number"),
    "int_type": N_("Enter a whole number"),
    "uuid_parsing": N_("Choose one of the options"),
    "uuid_type": N_("Choose one of the options"),
    "date_from_datetime_parsing": N_("Enter a date"),
    "date_parsing": N_("Enter a date"),
    "date_type": N_("Enter a date"),
    "enum": N_("Choose one of the options"),
    "string_pattern_mismatch": N_("Use letters, digits, - and _ only"),
}


def translate_error(page: Page, message: str, code: str) -> str:
    """The error in the page's language (see the module docstring for the fallbacks)."""
    translated = page.gettext(message)
    if translated != message or page.language == "en":
        return translated
    if code in CODE_MESSAGES:
        return page.gettext(CODE_MESSAGES[code])
    return message


@dataclass
class Form:
    """Values as typed (to fill the form again) and errors keyed by field name."""

    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    fields: frozenset[str] = frozenset()

    @classmethod
    def posted(cls, data: FormData, fields: Iterable[str]) -> Form:
        """The posted text fields, trimmed (except passwords, which are taken as typed)."""
        values: dict[str, str] = {}
        lists: dict[str, list[str]] = {}
        for key in data:
            items = [v for v in data.getlist(key) if isinstance(v, str)]
            if key not in UNTRIMMED:
                items = [v.strip() for v in items]
            if items:
                values[key] = items[0]
                lists[key] = items
        return cls(values=values, lists=lists, fields=frozenset(fields))

    @classmethod
    def initial(cls, values: Mapping[str, object], fields: Iterable[str]) -> Form:
        """A form filled from an existing record (lists go to ``lists``)."""
        form = cls(fields=frozenset(fields))
        for key, value in values.items():
            if isinstance(value, list | tuple | set | frozenset):
                form.lists[key] = [str(v) for v in value]
            elif isinstance(value, bool):
                form.values[key] = "on" if value else ""
            elif value is not None:
                form.values[key] = str(value)
        return form

    # -- reading values

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def getlist(self, name: str) -> list[str]:
        return self.lists.get(name, [])

    def checked(self, name: str, value: str | None = None) -> bool:
        if value is None:
            return self.values.get(name, "") not in ("", "0", "off", "false")
        return value in self.lists.get(name, [])

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.general

    # -- recording errors

    def add(self, name: str | None, message: str) -> None:
        if name is not None and name in self.fields:
            self.errors.setdefault(name, message)
        elif message not in self.general:
            self.general.append(message)

    def add_patron_error(self, page: Page, exc: PatronError,
                         aliases: Mapping[str, str] | None = None) -> None:
        aliases = aliases or {}
        if not exc.problems:
            self.add(None, translate_error(page, exc.message, exc.code))
        for problem in exc.problems:
            name = aliases.get(problem.field, problem.field)
            self.add(name, translate_error(page, problem.message, problem.code))

    def add_validation_error(self, page: Page, exc: ValidationError,
                             aliases: Mapping[str, str] | None = None) -> None:
        aliases = aliases or {}
        for err in exc.errors():
            loc = err.get("loc", ())
            name = str(loc[0]) if loc else None
            name = aliases.get(name or "", name)
            kind = str(err.get("type", ""))
            if kind == "value_error" and name != "email":
                message = page.gettext(N_("This value is not valid"))
            else:
                message = page.gettext(PYDANTIC_MESSAGES.get(kind, N_("This value is not valid")))
            self.add(name, message)

    # -- parsing helpers: they record an error and return None on bad input

    def text(self, name: str) -> str | None:
        """The stripped value, or None when empty."""
        return self.values.get(name) or None

    def int_value(self, page: Page, name: str) -> int | None:
        raw = self.values.get(name, "")
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            self.add(name, page.gettext(N_("Enter a whole number")))
            return None

    def uuid_value(self, page: Page, name: str) -> uuid.UUID | None:
        raw = self.values.get(name, "")
        if not raw:
            return None
        try:
            return uuid.UUID(raw)
        except ValueError:
            self.add(name, page.gettext(N_("Choose one of the options")))
            return None

    def uuid_values(self, page: Page, name: str) -> list[uuid.UUID]:
        result: list[uuid.UUID] = []
        for raw in self.lists.get(name, []):
            try:
                result.append(uuid.UUID(raw))
            except ValueError:
                self.add(name, page.gettext(N_("Choose one of the options")))
        return result

    def date_value(self, page: Page, name: str) -> date | None:
        raw = self.values.get(name, "")
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.add(name, page.gettext(N_("Enter a date")))
            return None


def split_tags(raw: str) -> list[str]:
    """Tags typed as a comma list; the Chinese comma and 、 separate too."""
    for sep in ("，", "、", ";", "；"):
        raw = raw.replace(sep, ",")
    return [t.strip() for t in raw.split(",") if t.strip()]


def attempt(page: Page, form: Form, action: Callable[[], T],
            aliases: Mapping[str, str] | None = None) -> T | None:
    """Run a service call unless the form already has errors; a refusal lands on the form.

    Returns the call's result, or None when it was refused (the caller then rolls back and
    renders the form again with ``form``'s values and errors). ``PermissionDenied`` is not
    a mistake in the form (pages only offer what the role may do), so it propagates and
    becomes the 403 page.
    """
    if not form.ok:
        return None
    try:
        return action()
    except PermissionDenied:
        raise
    except ValidationError as exc:
        form.add_validation_error(page, exc, aliases)
    except PatronError as exc:
        form.add_patron_error(page, exc, aliases)
    return None
