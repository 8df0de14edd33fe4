"""Who am I: the caller as the API sees them."""

from __future__ import annotations

from fastapi import APIRouter

from patron.api.deps import CurrentPrincipal
from patron.auth.schemas import MeRead

router = APIRouter(tags=["me"])


@router.get("/me", operation_id="get_me")
def me(principal: CurrentPrincipal) -> MeRead:
    return MeRead(kind=principal.kind, id=principal.id, label=principal.label,
                  role=principal.role, store_ids=sorted(principal.store_ids),
                  language=principal.language)
