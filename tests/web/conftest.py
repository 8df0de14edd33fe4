"""Fixtures of the web tests."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from patron.api.app import create_app
from patron.api.deps import AppContext
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings

_apps: dict[str, FastAPI] = {}


@pytest.fixture
def app(settings: Settings, db: Database, clock: FixedClock) -> FastAPI:
    """The app, built once per test database and handed each test's own context.

    Building FastAPI's routes is the slowest part of a page test, and the app holds no
    state of its own besides ``state.ctx`` (settings, database, clock), which is replaced
    here for every test, so tests that change a setting cannot leak it into the next.
    """
    web_app = _apps.get(settings.database_url)
    if web_app is None:
        web_app = _apps[settings.database_url] = create_app(settings, db=db, clock=clock)
    web_app.state.ctx = AppContext(settings=settings, db=db, clock=clock)
    return web_app
