"""Care rules' configuration and the record of each occasion already served.

``CareOccasion`` is what makes a rule fire at most once per member and occasion, across
crashes and re-runs: the row (unique on rule, member and occasion) is inserted in the same
transaction as the coupon and message it causes, so a re-run finds it and does nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, JSONType, uuid_pk


class CareRule(Base):
    __tablename__ = "care_rules"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    store_overrides: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime]


class CareOccasion(Base):
    __tablename__ = "care_occasions"

    id: Mapped[uuid.UUID] = uuid_pk()
    rule: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    occasion: Mapped[str] = mapped_column(String(100))  # e.g. "birthday:2026", a sale id
    created_at: Mapped[datetime]
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id"))
    coupon_code: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (UniqueConstraint("rule", "member_id", "occasion", name="uq_care_occasion"),)
