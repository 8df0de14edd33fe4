"""Catalogue: products and categories (filled in by the catalogue work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["catalog"])
