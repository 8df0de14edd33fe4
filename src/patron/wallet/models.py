"""Wallet tables.

Design overview: a member has at most one wallet account holding two balances, principal
(money the customer paid in) and bonus (money the shop gave, e.g. "top up 1,000 get 100").
Every movement is a ``WalletEntry`` with the signed deltas of both parts and the balances
after it; entries are never updated or deleted. The balances on the account are a cache of
the sum of its entries, written in the same transaction, and the database refuses a
negative balance (CHECK) whatever the code does. ``patron doctor`` proves the sums.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, uuid_pk


class WalletAccount(Base):
    __tablename__ = "wallet_accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    principal_minor: Mapped[int] = mapped_column(BigInt, default=0)
    bonus_minor: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("principal_minor >= 0", name="principal_non_negative"),
        CheckConstraint("bonus_minor >= 0", name="bonus_non_negative"),
    )

    @property
    def balance_minor(self) -> int:
        return self.principal_minor + self.bonus_minor


class WalletEntry(Base):
    __tablename__ = "wallet_entries"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallet_accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    principal_delta_minor: Mapped[int] = mapped_column(BigInt)
    bonus_delta_minor: Mapped[int] = mapped_column(BigInt)
    principal_after_minor: Mapped[int] = mapped_column(BigInt)
    bonus_after_minor: Mapped[int] = mapped_column(BigInt)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("wallet_entries.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_wallet_entries_account_seq", "account_id", "seq"),
        CheckConstraint("principal_after_minor >= 0 AND bonus_after_minor >= 0",
                        name="after_non_negative"),
    )


class BonusRule(Base):
    """Top up at least ``min_topup_minor`` and get ``bonus_minor`` (the best rule applies)."""

    __tablename__ = "wallet_bonus_rules"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    min_topup_minor: Mapped[int] = mapped_column(BigInt)
    bonus_minor: Mapped[int] = mapped_column(BigInt)
    active: Mapped[bool] = mapped_column(default=True)
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("min_topup_minor > 0 AND bonus_minor >= 0", name="amounts"),
    )
