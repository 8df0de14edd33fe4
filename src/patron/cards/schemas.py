"""API shapes of stamp cards, visit packages and gift cards. Amounts are minor units."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from patron.cards.enums import (
    GiftCardEntryKind,
    GiftCardStatus,
    PackageStatus,
    RewardKind,
    RewardStatus,
    StampBasis,
    VisitEntryKind,
)

MAX_MINOR = 100_000_000  # one movement or price; a typo of three zeros is refused
MAX_TARGETS = 1_000
MAX_BATCH = 1_000
Reference = Field(default=None, max_length=64, description="The till's own receipt number")

# ---------------------------------------------------------------- stamp cards


class StampProgrammeCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    basis: StampBasis = Field(description="One stamp per qualifying item, or per visit")
    stamps_needed: int = Field(ge=1, le=1000, description="Stamps that make one reward")
    reward_kind: RewardKind
    reward_product_id: uuid.UUID | None = Field(
        default=None, description="For 'product': the product given free")
    valid_days: int | None = Field(default=None, ge=1, le=3650,
                                   description="Days an earned reward can be used; none: "
                                               "no limit")
    product_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_TARGETS)
    category_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_TARGETS)


class StampProgrammeUpdate(BaseModel):
    """Fields to change. The terms (basis, stamps, reward, targets) are frozen once a
    member holds a card of the programme: start a new programme for new terms."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    active: bool | None = None
    basis: StampBasis | None = None
    stamps_needed: int | None = Field(default=None, ge=1, le=1000)
    reward_kind: RewardKind | None = None
    reward_product_id: uuid.UUID | None = None
    product_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_TARGETS)
    category_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_TARGETS)


class StampProgrammeRead(BaseModel):
    id: uuid.UUID
    name: str
    basis: StampBasis
    stamps_needed: int
    reward_kind: RewardKind
    reward_product_id: uuid.UUID | None
    valid_days: int | None
    product_ids: list[uuid.UUID]
    category_ids: list[uuid.UUID]
    active: bool
    created_at: datetime
    updated_at: datetime


class StampRewardRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    programme_id: uuid.UUID
    status: RewardStatus
    earned_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    redeemed_store_id: uuid.UUID | None
    reference: str | None


class StampCardRead(BaseModel):
    id: uuid.UUID
    programme_id: uuid.UUID
    programme_name: str
    stamps: int
    stamps_needed: int
    debt: int = Field(description="Stamps owed: a refunded sale's stamps whose reward was "
                                  "already used; new stamps pay this first")
    rewards: list[StampRewardRead] = Field(description="Rewards ready to use")


class RewardRedeemRequest(BaseModel):
    store_id: uuid.UUID | None = None
    reference: str | None = Reference


class RewardRedemptionRead(BaseModel):
    reward: StampRewardRead
    reward_kind: RewardKind
    reward_product_id: uuid.UUID | None = Field(description="For 'product': give this free")
    product_ids: list[uuid.UUID] = Field(description="For 'free_item': 100 % off one item "
                                                     "of these products or categories")
    category_ids: list[uuid.UUID]


# ---------------------------------------------------------------- visit packages


class PackageProductCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    visits: int = Field(ge=1, le=10_000)
    price_minor: int = Field(ge=0, le=MAX_MINOR)
    valid_days: int = Field(ge=1, le=3650)
    service_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_TARGETS,
                                         description="The service products a visit covers")


class PackageProductUpdate(BaseModel):
    """Price, visits and validity apply to packages sold from now on (a sold package keeps
    its own); the services are frozen once a package has been sold."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    visits: int | None = Field(default=None, ge=1, le=10_000)
    price_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR)
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    service_ids: list[uuid.UUID] | None = Field(default=None, min_length=1,
                                                max_length=MAX_TARGETS)
    active: bool | None = None


class PackageProductRead(BaseModel):
    id: uuid.UUID
    name: str
    visits: int
    price_minor: int
    valid_days: int
    service_ids: list[uuid.UUID]
    active: bool
    created_at: datetime
    updated_at: datetime


class SellPackageRequest(BaseModel):
    package_product_id: uuid.UUID
    store_id: uuid.UUID | None = None
    price_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR,
                                    description="What the customer paid, if not the list "
                                                "price (the refund is pro rata of it)")


class MemberPackageRead(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    package_product_id: uuid.UUID
    name: str
    visits_total: int
    visits_left: int
    price_minor: int
    status: PackageStatus
    usable_now: bool
    sold_at: datetime
    expires_at: datetime
    store_id: uuid.UUID | None
    service_ids: list[uuid.UUID]
    refunded_minor: int | None


class UseVisitRequest(BaseModel):
    product_id: uuid.UUID | None = Field(default=None, description="The service given")
    store_id: uuid.UUID | None = None
    reference: str | None = Reference


class VisitEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: VisitEntryKind
    delta: int
    visits_left_after: int
    product_id: uuid.UUID | None
    store_id: uuid.UUID | None
    reference: str | None
    occurred_at: datetime


class VisitUsed(BaseModel):
    package: MemberPackageRead
    entry: VisitEntryRead


class PackageRefundRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class PackageRefundRead(BaseModel):
    package: MemberPackageRead
    refund_minor: int = Field(description="Due to the customer for the unused visits")
    visits_refunded: int


# ---------------------------------------------------------------- gift cards


class GiftCardIssueRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    count: int = Field(ge=1, le=MAX_BATCH)
    face_value_minor: int = Field(gt=0, le=MAX_MINOR)
    valid_days: int | None = Field(default=None, ge=1, le=3650,
                                   description="None: the cards never expire")
    store_id: uuid.UUID | None = None


class IssuedGiftCard(BaseModel):
    """A new card with its PIN: the only time the PIN is shown."""

    id: uuid.UUID
    code: str
    display_code: str
    pin: str
    balance_minor: int
    expires_at: datetime | None


class GiftCardBatchRead(BaseModel):
    batch_id: uuid.UUID
    name: str
    face_value_minor: int
    count: int
    expires_at: datetime | None
    cards: list[IssuedGiftCard]


class GiftCardRead(BaseModel):
    id: uuid.UUID
    code: str
    display_code: str
    status: GiftCardStatus
    usable_now: bool
    balance_minor: int
    face_value_minor: int
    member_id: uuid.UUID | None
    issued_at: datetime
    expires_at: datetime | None


class GiftCardRedeemRequest(BaseModel):
    amount_minor: int = Field(gt=0, le=MAX_MINOR)
    store_id: uuid.UUID | None = None
    reference: str | None = Reference


class GiftCardEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: GiftCardEntryKind
    delta_minor: int
    balance_after_minor: int
    store_id: uuid.UUID | None
    reference: str | None
    occurred_at: datetime


class GiftCardMovement(BaseModel):
    card: GiftCardRead
    entry: GiftCardEntryRead


class GiftCardTransferRequest(BaseModel):
    """Without ``member_id`` the balance moves to a new code and PIN and the old card
    closes; with it, the card is attached to that member (no value moves)."""

    member_id: uuid.UUID | None = None


class GiftCardTransferRead(BaseModel):
    card: GiftCardRead
    new_card: IssuedGiftCard | None


class GiftCardVoidRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
