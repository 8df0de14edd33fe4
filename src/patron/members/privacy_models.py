"""Tables of members' privacy rights: their requests for a copy or an erasure of their data,
and the mark an erasure leaves.

A request is a row staff can work through (``pending`` until fulfilled); the member who asked
on their own page and the member a cashier recorded a request for look the same. An erasure
is irreversible: ``member_erasures`` says who erased whom and when (the why is in the audit
log), and its primary key makes a second erasure of the same member a no-op.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, uuid_pk


class DataRequest(Base):
    """A member's request for an export of their data or for its erasure."""

    __tablename__ = "data_requests"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # export | erasure
    status: Mapped[str] = mapped_column(String(10), default="pending")
    source: Mapped[str] = mapped_column(String(16))  # self_service | staff
    requested_at: Mapped[datetime]
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    handled_at: Mapped[datetime | None]
    handled_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (
        CheckConstraint("kind IN ('export','erasure')", name="kind"),
        CheckConstraint("status IN ('pending','done','cancelled')", name="status"),
        CheckConstraint("(status = 'pending') = (handled_at IS NULL)", name="handled"),
        Index("ix_data_requests_status_requested", "status", "requested_at"),
    )


class MemberErasure(Base):
    """The member's personal data was erased: when, by whom, on which request."""

    __tablename__ = "member_erasures"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    erased_at: Mapped[datetime]
    erased_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("data_requests.id"))
