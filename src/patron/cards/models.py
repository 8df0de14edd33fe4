"""Tables of stamp cards (集点卡), visit packages (计次卡) and gift cards (礼品卡).

Design overview
---------------
Three kinds of prepaid or earned value, each kept the way the wallet keeps money: a row
with a *cached* balance that the database refuses to take below zero (CHECK), and an
append-only ledger whose every entry carries the signed change and the balance after it.
Entries are never updated or deleted; a correction is a new entry. ``service.verify``
(run by ``patron doctor``) proves cached balance == sum of the ledger for every row.

* Stamp cards. A ``StampProgramme`` ("buy 9 coffees, the 10th is free") names the
  qualifying products and categories (``StampProgrammeTarget``). A member has at most one
  ``StampCard`` per programme (UNIQUE) holding ``stamps`` (towards the next reward, always
  below ``stamps_needed`` once a sale is booked) and ``debt`` (stamps a refund could not
  take back because the reward they made was already used: new stamps pay it off first).
  Units are whole stamps. ``StampEntry`` is the ledger of both. A full card turns
  ``stamps_needed`` stamps into one ``StampReward`` (a REWARD entry points at it), which is
  redeemed at most once. ``StampSale`` remembers what each sale gave, so stamps are given
  once per sale (UNIQUE(card, sale)) and refunds can be computed cumulatively.
* Visit packages. A ``PackageProduct`` (10 haircuts for 880.00, valid 365 days) covers
  some service products (``PackageProductService``). Selling one makes a ``MemberPackage``
  with ``visits_left`` (CHECK 0 <= left <= total); ``VisitEntry`` is its ledger in visits.
  The price paid is kept on the package, in minor units, for the pro-rata refund.
* Gift cards. A ``GiftCard`` is bearer value, not tied to a member (it may be attached to
  one): an unguessable ``code``, a PIN kept only as a hash, ``balance_minor`` in minor units
  (CHECK >= 0, and 0 unless the card is active) and ``GiftCardEntry`` as its ledger. A
  transfer closes the card and opens a new one; ``transferred_from_id`` is UNIQUE, so a
  balance can move on from a card at most once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patron.core.models import Base, BigInt, uuid_pk

GIFT_CODE_LENGTH = 16  # rules.GIFT_CODE_LENGTH: 15 random characters and a check character

# ---------------------------------------------------------------- stamp cards


class StampProgramme(Base):
    __tablename__ = "stamp_programmes"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    basis: Mapped[str] = mapped_column(String(8))
    stamps_needed: Mapped[int]
    reward_kind: Mapped[str] = mapped_column(String(16))
    reward_product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    valid_days: Mapped[int | None]  # how long an earned reward can be used; None: no limit
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    targets: Mapped[list[StampProgrammeTarget]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (
        CheckConstraint("basis IN ('item','visit')", name="basis"),
        CheckConstraint("stamps_needed BETWEEN 1 AND 1000", name="stamps_needed"),
        CheckConstraint(
            "(reward_kind = 'product' AND reward_product_id IS NOT NULL)"
            " OR (reward_kind = 'free_item' AND reward_product_id IS NULL)", name="reward"),
        CheckConstraint("valid_days IS NULL OR valid_days > 0", name="valid_days"),
    )


class StampProgrammeTarget(Base):
    """One qualifying category or product of a programme (exactly one of the two)."""

    __tablename__ = "stamp_programme_targets"

    id: Mapped[uuid.UUID] = uuid_pk()
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_programmes.id"))
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))

    __table_args__ = (
        CheckConstraint("(category_id IS NULL) <> (product_id IS NULL)", name="one_target"),
        Index("uq_stamp_programme_targets_category", "programme_id", "category_id",
              unique=True),
        Index("uq_stamp_programme_targets_product", "programme_id", "product_id", unique=True),
    )


class StampCard(Base):
    """A member's card of one programme: stamps towards the next reward, and stamp debt."""

    __tablename__ = "stamp_cards"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_programmes.id"))
    stamps: Mapped[int] = mapped_column(default=0)
    debt: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_stamp_cards_member_programme", "member_id", "programme_id", unique=True),
        CheckConstraint("stamps >= 0 AND debt >= 0", name="non_negative"),
    )


class StampReward(Base):
    """A full card's reward; redeemed at most once (status moves on under the row lock)."""

    __tablename__ = "stamp_rewards"

    id: Mapped[uuid.UUID] = uuid_pk()
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_cards.id"), index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_programmes.id"))
    status: Mapped[str] = mapped_column(String(10), default="available")
    earned_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    earned_sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    redeemed_at: Mapped[datetime | None]
    redeemed_store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    redeemed_sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    reference: Mapped[str | None] = mapped_column(String(64))  # a till's own receipt number
    redeemed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None]  # expired or revoked

    __table_args__ = (
        CheckConstraint("status IN ('available','redeemed','expired','revoked')",
                        name="status"),
        CheckConstraint("(status = 'redeemed') = (redeemed_at IS NOT NULL)", name="redeemed"),
        Index("ix_stamp_rewards_member_status", "member_id", "status"),
    )


class StampEntry(Base):
    __tablename__ = "stamp_entries"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_cards.id"))
    kind: Mapped[str] = mapped_column(String(16))
    stamps_delta: Mapped[int]
    debt_delta: Mapped[int]
    stamps_after: Mapped[int]
    debt_after: Mapped[int]
    reward_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stamp_rewards.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_stamp_entries_card_seq", "card_id", "seq"),
        CheckConstraint("stamps_after >= 0 AND debt_after >= 0", name="after_non_negative"),
    )


class StampSale(Base):
    """What one sale gave one card: given once (UNIQUE), taken back at most in full."""

    __tablename__ = "stamp_sales"

    id: Mapped[uuid.UUID] = uuid_pk()
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stamp_cards.id"))
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    items: Mapped[int]  # qualifying items in the sale
    stamps: Mapped[int]
    items_refunded: Mapped[int] = mapped_column(default=0)
    stamps_removed: Mapped[int] = mapped_column(default=0)
    awarded_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_stamp_sales_card_sale", "card_id", "sale_id", unique=True),
        CheckConstraint("items > 0 AND stamps > 0", name="positive"),
        CheckConstraint("items_refunded >= 0 AND items_refunded <= items"
                        " AND stamps_removed >= 0 AND stamps_removed <= stamps",
                        name="refund_within_award"),
    )


# ---------------------------------------------------------------- visit packages


class PackageProduct(Base):
    """What is sold: N visits of some services for a price, valid for some days."""

    __tablename__ = "package_products"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    visits: Mapped[int]
    price_minor: Mapped[int] = mapped_column(BigInt)
    valid_days: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    services: Mapped[list[PackageProductService]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (
        CheckConstraint("visits BETWEEN 1 AND 10000", name="visits"),
        CheckConstraint("price_minor >= 0", name="price_minor"),
        CheckConstraint("valid_days > 0", name="valid_days"),
    )


class PackageProductService(Base):
    """A service product one visit of the package pays for."""

    __tablename__ = "package_product_services"

    package_product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("package_products.id"), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), primary_key=True)


class MemberPackage(Base):
    """A package a member bought: visits left, until when, and what was paid for it."""

    __tablename__ = "member_packages"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    package_product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("package_products.id"))
    name: Mapped[str] = mapped_column(String(200))
    visits_total: Mapped[int]
    visits_left: Mapped[int]
    price_minor: Mapped[int] = mapped_column(BigInt)
    status: Mapped[str] = mapped_column(String(10), default="active")
    sold_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"), index=True)
    refunded_minor: Mapped[int | None] = mapped_column(BigInt)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("status IN ('active','used_up','expired','refunded')", name="status"),
        CheckConstraint("visits_total > 0 AND visits_left >= 0 AND visits_left <= visits_total",
                        name="visits"),
        CheckConstraint("price_minor >= 0", name="price_minor"),
        CheckConstraint("refunded_minor IS NULL OR (refunded_minor >= 0"
                        " AND refunded_minor <= price_minor)", name="refunded_minor"),
        CheckConstraint("status = 'active' OR visits_left = 0", name="closed_empty"),
        Index("ix_member_packages_member_status", "member_id", "status"),
        Index("ix_member_packages_status_expires", "status", "expires_at"),
    )


class VisitEntry(Base):
    __tablename__ = "visit_entries"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member_packages.id"))
    kind: Mapped[str] = mapped_column(String(12))
    delta: Mapped[int]
    visits_left_after: Mapped[int]
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    reference: Mapped[str | None] = mapped_column(String(64))
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("visit_entries.id"), unique=True)  # a use is given back at most once
    actor_label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_visit_entries_package_seq", "package_id", "seq"),
        CheckConstraint("visits_left_after >= 0", name="after_non_negative"),
    )


# ---------------------------------------------------------------- gift cards


class GiftCardBatch(Base):
    __tablename__ = "gift_card_batches"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    face_value_minor: Mapped[int] = mapped_column(BigInt)
    count: Mapped[int]
    expires_at: Mapped[datetime | None]
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("face_value_minor > 0 AND count > 0", name="positive"),
    )


class GiftCard(Base):
    """Bearer stored value: whoever has the code and the PIN may spend it."""

    __tablename__ = "gift_cards"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(GIFT_CODE_LENGTH), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gift_card_batches.id"),
                                                       index=True)
    status: Mapped[str] = mapped_column(String(8), default="active")
    face_value_minor: Mapped[int] = mapped_column(BigInt)
    balance_minor: Mapped[int] = mapped_column(BigInt)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    transferred_from_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("gift_cards.id"), unique=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    failed_pin_attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    void_reason: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("status IN ('active','closed','void','expired')", name="status"),
        CheckConstraint("balance_minor >= 0", name="balance_non_negative"),
        CheckConstraint("status = 'active' OR balance_minor = 0", name="closed_empty"),
        CheckConstraint("face_value_minor > 0", name="face_value"),
        CheckConstraint("failed_pin_attempts >= 0", name="failed_pin_attempts"),
        Index("ix_gift_cards_status_expires", "status", "expires_at"),
    )


class GiftCardEntry(Base):
    __tablename__ = "gift_card_entries"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("gift_cards.id"))
    kind: Mapped[str] = mapped_column(String(16))
    delta_minor: Mapped[int] = mapped_column(BigInt)
    balance_after_minor: Mapped[int] = mapped_column(BigInt)
    counterpart_card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gift_cards.id"))
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gift_card_entries.id"),
                                                          index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    reference: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_gift_card_entries_card_seq", "card_id", "seq"),
        CheckConstraint("balance_after_minor >= 0", name="after_non_negative"),
    )
