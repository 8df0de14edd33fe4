"""The audit log: one function to record who changed what, used by every domain."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.models import AuditEntry
from patron.auth.principal import Principal
from patron.core.clock import Clock
from patron.core.ids import new_id


def record(
    session: Session,
    *,
    clock: Clock,
    actor: Principal | None,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an audit entry in the caller's transaction (it commits with the change)."""
    entry = AuditEntry(
        id=new_id(),
        at=clock.now(),
        actor_user_id=actor.user_id if actor else None,
        actor_api_key_id=actor.api_key_id if actor else None,
        actor_label=actor.label if actor else "system",
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id is not None else None,
        store_id=store_id,
        details=details or {},
    )
    session.add(entry)
    return entry


def list_entries(
    session: Session, *, entity_type: str | None = None, entity_id: str | None = None,
    action: str | None = None, limit: int = 50, before_seq: int | None = None,
) -> list[AuditEntry]:
    """Newest first; page with ``before_seq`` (the ``seq`` of the last entry seen)."""
    stmt = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if entity_type:
        stmt = stmt.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if before_seq is not None:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    return list(session.scalars(stmt))
