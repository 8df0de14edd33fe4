"""The ASGI application: JSON API under ``/api/v1``, web admin at ``/``, OpenAPI at ``/docs``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from patron.api import problems
from patron.api.deps import AppContext
from patron.api.routers import (
    analytics,
    api_keys,
    audit,
    campaigns,
    cards,
    catalog,
    feedback,
    loyalty,
    me,
    member_io,
    members,
    messaging,
    offers,
    portraits,
    privacy,
    promotions,
    reports,
    sales,
    session,
    stores,
    team,
    users,
    wallet,
)
from patron.core import registry  # noqa: F401 - every table known before the first query
from patron.core.clock import Clock, SystemClock
from patron.core.db import Database
from patron.core.logsafety import install as scrub_logs
from patron.core.settings import Settings


def create_app(settings: Settings | None = None, *, db: Database | None = None,
               clock: Clock | None = None) -> FastAPI:
    """Build the app; nothing is created at import time so tests can pass their own parts."""
    settings = settings or Settings()
    scrub_logs()  # no phone numbers, e-mail addresses or query strings in the logs
    db = db or Database.from_url(settings.database_url)
    app = FastAPI(
        title="patron API",
        version="1",
        summary="Members, loyalty and customer care for shops and chains of stores.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served from the package below, not from a CDN
        redoc_url=None,
    )
    from patron.api.security import SecurityMiddleware, install_docs

    install_docs(app)
    app.add_middleware(SecurityMiddleware, hsts=settings.cookie_secure,
                       upload_limit=settings.max_upload_bytes + 64 * 1024)
    app.state.ctx = AppContext(settings=settings, db=db, clock=clock or SystemClock())
    problems.install(app)
    v1 = APIRouter(prefix="/api/v1")
    for module in (session, me, stores, member_io, members, wallet, loyalty, sales, catalog,
                   offers, promotions, cards, feedback, messaging, users, api_keys, audit):
        v1.include_router(module.router)
    v1.include_router(analytics.router)
    v1.include_router(portraits.router)
    v1.include_router(reports.router)
    v1.include_router(campaigns.router)
    v1.include_router(team.router)
    v1.include_router(privacy.router)
    app.include_router(v1)

    from patron.web import routes as web  # the web layer is optional for API-only tests

    web.install(app)
    return app
