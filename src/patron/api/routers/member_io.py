"""Member import and export (filled in by the import/export work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/members", tags=["members"])
