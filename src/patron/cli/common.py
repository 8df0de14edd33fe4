"""Helpers shared by the CLI commands."""

from __future__ import annotations

from patron.core import registry  # noqa: F401 - every table known before the first query
from patron.core.db import Database
from patron.core.settings import Settings


def settings_from(database_url: str | None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


def open_db(database_url: str | None) -> Database:
    return Database.from_url(settings_from(database_url).database_url)
