"""The audit log, for owners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patron.api.deps import CurrentPrincipal, DbSession
from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.auth.schemas import AuditRead

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", operation_id="list_audit_entries")
def list_audit(
    session: DbSession, principal: CurrentPrincipal,
    entity_type: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AuditRead]:
    require_role(principal, Role.OWNER, users_only=True)
    entries = audit.list_entries(session, entity_type=entity_type, entity_id=entity_id,
                                 action=action, limit=limit, before_seq=before_seq)
    return [AuditRead.model_validate(e) for e in entries]
