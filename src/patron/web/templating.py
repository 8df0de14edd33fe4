"""Jinja2 rendering for the admin: one environment per language, shared helpers.

Each language gets its own environment with that language's gettext installed (Jinja's
i18n extension binds translations to an environment), so rendering never switches a
shared global and stays safe across threads. Templates are compiled once per process.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from patron.auth.enums import Role
from patron.auth.principal import RANK
from patron.web import i18n, nav
from patron.web.deps import Page
from patron.web.i18n import N_

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

#: One-shot messages shown after a redirect (keys travel in the flash cookie).
FLASHES: dict[str, str] = {
    "signed_out": N_("You have signed out."),
    "member_enrolled": N_("Member enrolled."),
    "member_saved": N_("Changes saved."),
    "member_deleted": N_("The member was deleted. Their history is kept."),
    "members_merged": N_("The duplicate was merged into this member."),
    "consent_changed": N_("Consent updated."),
    "user_created": N_("Staff account created."),
    "user_saved": N_("Staff account saved."),
    "key_revoked": N_("The API key was revoked. Terminals using it are locked out now."),
    "store_created": N_("Store created."),
    "store_saved": N_("Store saved."),
}

#: Display names of enum values, kept here so the catalogue holds them.
LABELS: dict[str, str] = {
    "owner": N_("Owner"), "manager": N_("Manager"), "cashier": N_("Cashier"),
    "female": N_("Female"), "male": N_("Male"), "other": N_("Other"),
    "solar": N_("Solar (Gregorian)"), "lunar": N_("Lunar (农历)"),
    "sms": N_("SMS"), "email": N_("E-mail"),
    "active": N_("Active"), "merged": N_("Merged"), "deleted": N_("Deleted"),
    "wedding": N_("Wedding"), "founding": N_("Founding day"),
    "enrolment": N_("At enrolment"), "admin": N_("By staff"), "import": N_("Import"),
    "sms_reply": N_("SMS reply"), "link": N_("Unsubscribe link"),
}


#: Pages load nothing from elsewhere, run no inline script and cannot be framed
#: (clickjacking); personal data is never cached by the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def static_version(name: str) -> str:
    """A short content hash, so a new release's CSS and JS bypass old browser caches."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"/static/{name}?v={static_version(name)}"


def url_with(path: str, params: dict[str, Any], **changes: Any) -> str:
    """``path`` with ``params`` updated by ``changes``; empty values are left out."""
    merged = {**params, **changes}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "", False)})
    return f"{path}?{query}" if query else path


@functools.cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    install = env.install_gettext_translations  # type: ignore[attr-defined]
    install(i18n.translations(language), newstyle=True)
    env.globals.update(static_url=static_url, url_with=url_with, languages=i18n.LANGUAGE_NAMES,
                       html_lang=i18n.html_lang(language), LABELS=LABELS)
    return env


def has_role(page: Page, minimum: str) -> bool:
    """For templates: whether to offer an action (the service still decides)."""
    return page.principal is not None and RANK[page.principal.role] >= RANK[Role(minimum)]


def render(page: Page, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the shared context, and apply cookies."""
    env = environment(page.language)
    flash = FLASHES.get(page.flash or "")
    html = env.get_template(template).render(
        page=page, principal=page.principal, fmt=page.formatter, lang=page.language,
        csrf_token=page.csrf_token, brand=page.app.settings.brand_name,
        nav_items=nav.visible_items(page.principal), nav_active=nav.active_key(
            page.request.url.path), flash=page.gettext(flash) if flash else None,
        has_role=lambda minimum: has_role(page, minimum), path=page.request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    response.headers["Vary"] = "HX-Request, Cookie"
    response.headers["Cache-Control"] = "no-store"
    return page.apply_cookies(response)


def redirect(page: Page, url: str, *, flash: str | None = None) -> Response:
    """See-other redirect after a successful POST (so a reload does not post again)."""
    if flash:
        page.set_flash(flash)
    return page.apply_cookies(RedirectResponse(url, status_code=303))
