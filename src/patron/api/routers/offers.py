"""Coupons and referrals (filled in by the offers work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["offers"])
