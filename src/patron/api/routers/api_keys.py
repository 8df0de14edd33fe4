"""API keys for POS terminals: one store each, shown once, revocable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.auth import service as auth
from patron.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead

router = APIRouter(prefix="/api-keys", tags=["api keys"])


@router.get("", operation_id="list_api_keys")
def list_api_keys(session: DbSession, principal: CurrentPrincipal,
                  store_id: Annotated[uuid.UUID | None, Query()] = None) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k)
            for k in auth.list_api_keys(session, actor=principal, store_id=store_id)]


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_api_key")
def create_api_key(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   body: ApiKeyCreate) -> ApiKeyCreated:
    key, secret = auth.create_api_key(session, clock=ctx.clock, actor=principal,
                                      store_id=body.store_id, name=body.name)
    session.commit()
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), secret=secret)


@router.delete("/{key_id}", operation_id="revoke_api_key")
def revoke_api_key(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   key_id: uuid.UUID) -> ApiKeyRead:
    key = auth.revoke_api_key(session, clock=ctx.clock, actor=principal, key_id=key_id)
    session.commit()
    return ApiKeyRead.model_validate(key)
