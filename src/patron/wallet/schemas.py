"""API shapes of the wallet."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from patron.wallet.enums import EntryKind

Amount = Field(gt=0, le=100_000_000, description="Integer minor units (fen, cents)")


class TopUpRequest(BaseModel):
    amount_minor: int = Amount
    store_id: uuid.UUID | None = None
    reason: str = Field(default="", max_length=500)


class SpendRequest(BaseModel):
    amount_minor: int = Amount
    store_id: uuid.UUID | None = None
    reason: str = Field(default="", max_length=500)


class AdjustRequest(BaseModel):
    principal_delta_minor: int = Field(default=0, ge=-100_000_000, le=100_000_000)
    bonus_delta_minor: int = Field(default=0, ge=-100_000_000, le=100_000_000)
    reason: str = Field(min_length=1, max_length=500)


class WalletEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: EntryKind
    principal_delta_minor: int
    bonus_delta_minor: int
    principal_after_minor: int
    bonus_after_minor: int
    store_id: uuid.UUID | None
    sale_id: uuid.UUID | None
    reverses_id: uuid.UUID | None
    actor_label: str
    reason: str
    occurred_at: datetime


class WalletRead(BaseModel):
    member_id: uuid.UUID
    principal_minor: int
    bonus_minor: int
    balance_minor: int
    entries: list[WalletEntryRead]


class WalletMovement(BaseModel):
    entry: WalletEntryRead
    principal_minor: int
    bonus_minor: int
    balance_minor: int


class BonusRuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    min_topup_minor: int = Field(gt=0, le=100_000_000)
    bonus_minor: int = Field(ge=0, le=100_000_000)
    valid_from: datetime | None = None
    valid_until: datetime | None = None


class BonusRuleRead(BonusRuleIn):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    active: bool
