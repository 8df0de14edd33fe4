"""Web admin routes: the page modules, the static files, and the catalogues at startup.

Each page module holds one ``router`` of ``routing.WebRoute`` routes. Order matters where
paths overlap: fixed paths such as ``/members/new`` and ``/members/export.csv`` are
registered before ``/members/{member_id}``. A later feature adds a module to
``PAGE_MODULES`` and, for the menu, a ``nav.NavItem``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from patron.web import i18n, templating
from patron.web.pages import (
    account,
    api_keys,
    audit,
    care_inbox,
    care_rules,
    cashier,
    catalog,
    dashboard,
    join,
    marketing,
    member_actions,
    member_io,
    members,
    promotions,
    selfservice,
    settings,
    settings_messaging,
    settings_offers,
    staff,
    stores,
    team,
)

PAGE_MODULES = (account, member_io, members, catalog, staff, api_keys, stores, audit, cashier,
                selfservice, join, settings, settings_offers, settings_messaging, promotions,
                dashboard,
                member_actions,
                care_rules, care_inbox,
                marketing,
                team)


class VersionedStaticFiles(StaticFiles):
    """Static files; a URL with the content hash (``?v=``, see ``templating.static_url``)
    never changes, so browsers may keep it for a year without asking again."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200 and b"v=" in scope.get("query_string", b""):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def install(app: FastAPI) -> None:
    """Mount the web admin on ``app``: pages at ``/``, assets under ``/static``."""
    i18n.catalogues()  # compile the .po files now: a broken catalogue fails at startup
    for module in PAGE_MODULES:
        app.include_router(module.router)
    app.mount("/static", VersionedStaticFiles(directory=templating.STATIC_DIR), name="static")
