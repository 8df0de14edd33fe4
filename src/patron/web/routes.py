"""Web admin routes (filled in by the web work)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the web admin on ``app``."""
