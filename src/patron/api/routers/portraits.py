"""Customer portraits: the clusters of the latest snapshot and a member's inferred profile.

For staff users (API keys are refused): the portraits list is for owners and managers and
counts the members of the stores they see (an owner: every store; ``store_id`` narrows to
one), like the reports; a member's profile is for any staff user, as members belong to
the brand (their scores are readable the same way).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from patron.analytics import portraits
from patron.analytics import service as analytics
from patron.analytics.portrait_schemas import MemberProfileRead, PortraitList, PortraitRead
from patron.api.deps import CurrentPrincipal, DbSession
from patron.auth.enums import Role
from patron.auth.principal import require_role, require_store
from patron.core.errors import NotFound
from patron.members import service as members

router = APIRouter(tags=["portraits"])


@router.get("/portraits", operation_id="list_portraits")
def list_portraits(
    session: DbSession, principal: CurrentPrincipal,
    store_id: Annotated[uuid.UUID | None,
                        Query(description="One store (default: all you see)")] = None,
) -> PortraitList:
    """The portraits of the latest snapshot with their words, size, revenue share,
    retention and CLV, counted over the members (by home store) you may see."""
    require_role(principal, Role.MANAGER, users_only=True)
    if store_id is not None:
        require_store(principal, store_id)
        stores: frozenset[uuid.UUID] | None = frozenset({store_id})
    else:
        stores = principal.visible_store_ids()
    found = portraits.portrait_summary(session, store_ids=stores)
    return PortraitList(as_of=found[0].as_of if found else analytics.latest_as_of(session),
                        portraits=[PortraitRead.model_validate(p) for p in found])


@router.get("/members/{member_id}/profile", operation_id="get_member_profile")
def get_member_profile(session: DbSession, principal: CurrentPrincipal,
                       member_id: uuid.UUID) -> MemberProfileRead:
    """The member's inferred profile, automatic tags and portrait (refreshed nightly)."""
    require_role(principal, Role.CASHIER, users_only=True)
    members.get_member(session, member_id=member_id)
    view = portraits.member_profile(session, member_id=member_id)
    if view is None:
        day = analytics.latest_as_of(session)
        if day is None:
            raise NotFound("No analytics snapshot yet: run `patron analytics refresh` (the "
                           "worker runs it nightly)", "member_id", code="no_snapshot")
        raise NotFound(f"This member has no profile in the snapshot of {day}: they joined "
                       "later, or are not an active member", "member_id", code="not_profiled")
    return MemberProfileRead.model_validate(view)
