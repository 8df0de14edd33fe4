"""Transactional outbox: business events written in the same transaction as the change.

The worker (``patron.jobs.worker``) reads unprocessed rows in ``seq`` order and runs each
event's handlers in a savepoint; a handler that keeps failing is given up after a few
attempts with the error kept in ``last_error``.
Because the event row commits or rolls back with the change itself, a crash can neither
lose an event for a committed change nor publish one for a change that never happened.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from patron.core.clock import Clock
from patron.core.ids import new_id
from patron.core.models import Base, BigInt, JSONType


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[uuid.UUID | None]
    store_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))  # why a handler failed

    __table_args__ = (Index("ix_outbox_events_pending", "processed_at", "seq"),)


def emit(
    session: Session,
    *,
    clock: Clock,
    type: str,
    payload: dict[str, Any],
    subject_id: uuid.UUID | None = None,
    store_id: uuid.UUID | None = None,
) -> OutboxEvent:
    """Record a business event (``member.joined``, ``sale.completed``...) in this transaction."""
    event = OutboxEvent(
        type=type, payload=payload, subject_id=subject_id, store_id=store_id,
        occurred_at=clock.now(),
    )
    session.add(event)
    return event
