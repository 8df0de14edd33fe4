"""Stores of the brand, and the staff of one store."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.auth import service as auth
from patron.auth.schemas import UserRead
from patron.members import service as members
from patron.members.schemas import StoreCreate, StoreRead, StoreUpdate

router = APIRouter(prefix="/stores", tags=["stores"])


@router.get("", operation_id="list_stores")
def list_stores(session: DbSession, _principal: CurrentPrincipal) -> list[StoreRead]:
    """Every active store: members are shared by the chain, so every caller may list them."""
    return [StoreRead.model_validate(s) for s in members.list_stores(session)]


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_store")
def create_store(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                 body: StoreCreate) -> StoreRead:
    store = members.create_store(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return StoreRead.model_validate(store)


@router.get("/{store_id}", operation_id="get_store")
def get_store(session: DbSession, _principal: CurrentPrincipal, store_id: uuid.UUID) -> StoreRead:
    return StoreRead.model_validate(members.get_store(session, store_id=store_id))


@router.patch("/{store_id}", operation_id="update_store")
def update_store(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                 store_id: uuid.UUID, body: StoreUpdate) -> StoreRead:
    store = members.update_store(session, clock=ctx.clock, actor=principal, store_id=store_id,
                                 data=body)
    session.commit()
    return StoreRead.model_validate(store)


@router.get("/{store_id}/staff", operation_id="list_store_staff")
def list_store_staff(session: DbSession, principal: CurrentPrincipal,
                     store_id: uuid.UUID) -> list[UserRead]:
    """Staff of one store: its managers and the owner only."""
    members.get_store(session, store_id=store_id)
    users = auth.list_users(session, actor=principal, store_id=store_id)
    return [UserRead.model_validate(u) for u in users]
