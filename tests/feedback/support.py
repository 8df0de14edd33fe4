"""Helpers of the feedback tests: outbox events and row counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.core.events import OutboxEvent


def events(session: Session, type_: str) -> list[dict[str, Any]]:
    """The payloads of the outbox events of one type, oldest first."""
    return [e.payload for e in session.scalars(
        select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.seq))]


def count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)
