"""The app as a real server process for concurrency tests (``uvicorn --factory``).

With ``PATRON_TEST_BREAK_LOCK=1`` it takes the lock away -- no ``SELECT ... FOR UPDATE`` on
PostgreSQL, a deferred ``BEGIN`` instead of ``BEGIN IMMEDIATE`` on SQLite -- so a test can
show that it catches the lost update or the failed writes that follow. The row locks of the
wallet and of coupons (``offers.service.for_update``) both go.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from sqlalchemy import Select

from patron.api.app import create_app
from patron.core import db as core_db
from patron.core.settings import Settings
from patron.offers import service as offers
from patron.wallet import service as wallet


def _no_lock(stmt: Select[wallet.WalletAccount]) -> Select[wallet.WalletAccount]:
    return stmt


def create() -> FastAPI:
    settings = Settings()
    if os.environ.get("PATRON_TEST_BREAK_LOCK") == "1":
        wallet.for_update = _no_lock  # type: ignore[assignment]
        offers.for_update = _no_lock  # type: ignore[assignment]
        database = core_db.Database.from_url(settings.database_url)
        database._write = database._read  # deferred BEGIN on SQLite
        database.serialised_writes = False
        return create_app(settings, db=database)
    return create_app(settings)
