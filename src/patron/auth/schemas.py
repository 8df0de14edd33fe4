"""API shapes of the auth domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.auth.enums import PrincipalKind, Role


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=256)
    role: Role
    store_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    language: Literal["en", "zh_CN"] | None = None


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    store_ids: list[uuid.UUID] | None = Field(default=None, max_length=500)
    active: bool | None = None
    language: Literal["en", "zh_CN"] | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    store_ids: list[uuid.UUID]
    language: str | None
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyCreate(BaseModel):
    store_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    store_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    secret: str = Field(description="Shown once. Send as 'Authorization: Bearer <secret>'.")


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    id: uuid.UUID
    at: datetime
    actor_label: str
    actor_user_id: uuid.UUID | None
    actor_api_key_id: uuid.UUID | None
    action: str
    entity_type: str
    entity_id: str | None
    store_id: uuid.UUID | None
    details: dict[str, Any]


class MeRead(BaseModel):
    kind: PrincipalKind
    id: uuid.UUID
    label: str
    role: Role
    store_ids: list[uuid.UUID]
    language: str | None
