"""Staff users and their roles."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.auth import service as auth
from patron.auth.schemas import UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["staff"])


@router.get("", operation_id="list_users")
def list_users(session: DbSession, principal: CurrentPrincipal,
               store_id: Annotated[uuid.UUID | None, Query()] = None) -> list[UserRead]:
    return [UserRead.model_validate(u)
            for u in auth.list_users(session, actor=principal, store_id=store_id)]


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_user")
def create_user(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                body: UserCreate) -> UserRead:
    user = auth.create_user(session, clock=ctx.clock, actor=principal, username=body.username,
                            display_name=body.display_name, password=body.password,
                            role=body.role, store_ids=body.store_ids, language=body.language)
    session.commit()
    return UserRead.model_validate(user)


@router.get("/{user_id}", operation_id="get_user")
def get_user(session: DbSession, principal: CurrentPrincipal, user_id: uuid.UUID) -> UserRead:
    return UserRead.model_validate(auth.get_user_for(session, actor=principal, user_id=user_id))


@router.patch("/{user_id}", operation_id="update_user")
def update_user(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, user_id: uuid.UUID,
                body: UserUpdate) -> UserRead:
    user = auth.update_user(session, clock=ctx.clock, actor=principal, user_id=user_id,
                            display_name=body.display_name, role=body.role,
                            store_ids=body.store_ids, active=body.active,
                            language=body.language, password=body.password)
    session.commit()
    return UserRead.model_validate(user)
