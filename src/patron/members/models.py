"""Tables of the members domain.

A member belongs to the brand, not to a store: phone numbers and card numbers are unique
across the whole chain so a customer is recognised in every store. ``home_store_id`` is where
they mostly shop; ``enrolled_store_id`` and ``enrolled_by_id`` record who signed them up.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patron.core.models import Base, BigInt, uuid_pk


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = uuid_pk()
    card_no: Mapped[str] = mapped_column(String(20), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164; NULL once erased
    phone_last4: Mapped[str | None] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    gender: Mapped[str | None] = mapped_column(String(16))

    birthday_calendar: Mapped[str | None] = mapped_column(String(8))
    birth_year: Mapped[int | None]
    birth_month: Mapped[int | None]
    birth_day: Mapped[int | None]
    birth_leap_month: Mapped[bool] = mapped_column(default=False)

    preferences: Mapped[str] = mapped_column(Text, default="")
    referral_source: Mapped[str | None] = mapped_column(String(200))
    referred_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))

    home_store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    enrolled_store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    enrolled_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))

    sms_consent: Mapped[bool] = mapped_column(default=False)
    email_consent: Mapped[bool] = mapped_column(default=False)
    # PIPL: a member under 14 gets no marketing unless a guardian's consent is recorded
    guardian_consent: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str | None] = mapped_column(String(8))  # None: the brand's default

    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    joined_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]

    # loaded when first read (a profile page), not on every lookup at the till
    tags: Mapped[list[MemberTag]] = relationship(
        cascade="all, delete-orphan", lazy="select", order_by="MemberTag.tag"
    )
    anniversaries: Mapped[list[Anniversary]] = relationship(
        cascade="all, delete-orphan", lazy="select", order_by="Anniversary.on"
    )

    __table_args__ = (
        # One phone per brand among live records; merged/erased rows keep their history.
        Index("uq_members_phone_live", "phone", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
        Index("ix_members_phone_last4", "phone_last4"),
        Index("ix_members_name", "name"),
        Index("ix_members_home_store_id", "home_store_id"),
        Index("ix_members_birthday", "birth_month", "birth_day"),  # the daily greeting job
        # who a member brought in (the member page's referral tree); few members have one
        Index("ix_members_referred_by_id", "referred_by_id",
              sqlite_where=text("referred_by_id IS NOT NULL"),
              postgresql_where=text("referred_by_id IS NOT NULL")),
        CheckConstraint("birth_month IS NULL OR birth_month BETWEEN 1 AND 12", name="birth_month"),
        CheckConstraint("birth_day IS NULL OR birth_day BETWEEN 1 AND 31", name="birth_day"),
        CheckConstraint("status IN ('active','merged','deleted')", name="status"),
    )


class MemberTag(Base):
    __tablename__ = "member_tags"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_member_tags_tag", "tag"),)


class Anniversary(Base):
    """Dates other than the birthday worth greeting: a wedding, a B2B member's founding day."""

    __tablename__ = "member_anniversaries"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    on: Mapped[date]


class ConsentEvent(Base):
    """Append-only record of every grant or withdrawal of marketing consent, with its source.

    The current state is cached on ``Member.sms_consent`` / ``email_consent`` and updated in
    the same transaction; this table is the evidence a regulator or the member can ask for.
    """

    __tablename__ = "consent_events"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(64))  # enrolment, admin, import, sms_reply, link
    at: Mapped[datetime]
    by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    note: Mapped[str] = mapped_column(String(500), default="")


class MemberMerge(Base):
    """Which duplicate record was folded into which survivor, when and by whom."""

    __tablename__ = "member_merges"

    id: Mapped[uuid.UUID] = uuid_pk()
    survivor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merged_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    at: Mapped[datetime]
    by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    moved: Mapped[str] = mapped_column(Text, default="")  # JSON summary of moved rows

    __table_args__ = (UniqueConstraint("survivor_id", "merged_id"),)


class MemberNote(Base):
    """A staff note about a member, signed and dated: append-only (``members.notes``).

    ``author_name`` is the author's user name when they wrote it, so the note still says who
    wrote it after the account is renamed; notes moved out of the old "Preferences and notes"
    text may have no ``author_id`` when the name no longer matches a user.
    """

    __tablename__ = "member_notes"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    author_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (
        # the member page lists a member's notes newest first
        Index("ix_member_notes_member_created", "member_id", "created_at"),
        CheckConstraint("length(body) <= 2000", name="body_length"),
    )
