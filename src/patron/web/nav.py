"""The sections of the admin shown in the navigation, and who sees each.

Later features add their pages by appending a ``NavItem`` here (and a router in
``routes.PAGE_MODULES``); the layout renders whatever this list holds for the viewer's role.
Hiding an item is only a courtesy: the services refuse what a role may not do.
"""

from __future__ import annotations

from dataclasses import dataclass

from patron.auth.enums import Role
from patron.auth.principal import RANK, Principal
from patron.web.i18n import N_


@dataclass(frozen=True)
class NavItem:
    key: str
    href: str
    label: str  # an English msgid, translated when rendered
    icon: str  # a macro name in templates/_icons.html
    min_role: Role = Role.CASHIER


NAV: list[NavItem] = [
    NavItem("dashboard", "/", N_("Dashboard"), "home"),
    NavItem("members", "/members", N_("Members"), "users"),
    NavItem("care", "/care", N_("Customer care"), "phone", Role.MANAGER),
    NavItem("team", "/team", N_("Team"), "chart", Role.MANAGER),
    NavItem("staff", "/staff", N_("Staff"), "badge", Role.MANAGER),
    NavItem("stores", "/stores", N_("Stores"), "store", Role.MANAGER),
    NavItem("api_keys", "/api-keys", N_("API keys"), "key", Role.MANAGER),
    NavItem("audit", "/audit", N_("Audit log"), "shield", Role.OWNER),
]


def register(item: NavItem, *, after: str | None = None) -> None:
    """Add a section (after the one keyed ``after``, else at the end); idempotent by key."""
    if any(existing.key == item.key for existing in NAV):
        return
    keys = [existing.key for existing in NAV]
    NAV.insert(keys.index(after) + 1 if after in keys else len(NAV), item)


def visible_items(principal: Principal | None) -> list[NavItem]:
    if principal is None:
        return []
    return [item for item in NAV if RANK[principal.role] >= RANK[item.min_role]]


def active_key(path: str) -> str | None:
    """The section a path belongs to: the longest nav href that prefixes it."""
    best: NavItem | None = None
    for item in NAV:
        href = item.href
        matches = path == href or (href != "/" and path.startswith(href.rstrip("/") + "/"))
        if matches and (best is None or len(href) > len(best.href)):
            best = item
    return best.key if best else None
