"""Messages to members and integrators, their delivery history, and the sending policy.

A ``Message`` is created once per occasion (its ``dedupe_key`` is unique: a rule, a member
and an occasion, or an event and an endpoint), rendered when it is created so the admin
shows exactly what went out, and then moved through its states by the worker:

    queued -> sending -> sent -> delivered            (provider callback)
                      -> queued (retry with backoff) -> ... -> dead (dead letters)
                      -> failed                       (permanent provider refusal)
    queued -> suppressed                              (no consent, capped, unsubscribed)

``sending`` carries a lease: a worker killed mid-send leaves the message to be picked up
again when the lease runs out.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, JSONType, uuid_pk


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # sms, email, webhook
    purpose: Mapped[str] = mapped_column(String(16))  # transactional, marketing
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    source_event_id: Mapped[uuid.UUID | None]
    recipient: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    segments: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # when the log retention removed the personal content (``purge_message_logs``)
    purged_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_messages_due", "status", "not_before"),
        # the retention job's work list: only rows not yet purged, oldest first
        Index("ix_messages_unpurged", "created_at", sqlite_where=text("purged_at IS NULL"),
              postgresql_where=text("purged_at IS NULL")),
        CheckConstraint("status IN ('queued', 'sending', 'sent', 'delivered', 'failed', "
                        "'dead', 'suppressed')", name="status"),
        CheckConstraint("purpose IN ('transactional', 'marketing')", name="purpose"),
    )


class MessageEvent(Base):
    """Append-only history of one message: every attempt, callback and suppression."""

    __tablename__ = "message_events"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id"), index=True)
    at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(1000), default="")


class MessagingPolicy(Base):
    """The brand's sending rules (one row): quiet hours in each store's zone, weekly cap,
    and how long finished messages keep their personal content."""

    __tablename__ = "messaging_policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    quiet_start: Mapped[time] = mapped_column(default=time(21, 0))
    quiet_end: Mapped[time] = mapped_column(default=time(9, 0))
    weekly_cap: Mapped[int] = mapped_column(default=3)  # marketing messages per member
    max_attempts: Mapped[int] = mapped_column(default=8)
    # days a finished message keeps its body and recipient (decision 0004)
    log_retention_days: Mapped[int] = mapped_column(default=730, server_default=text("730"))
    updated_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),
                      CheckConstraint("weekly_cap >= 0", name="weekly_cap"),
                      CheckConstraint("log_retention_days BETWEEN 90 AND 3650",
                                      name="log_retention_days"),
                      CheckConstraint("max_attempts BETWEEN 1 AND 50", name="max_attempts"))


class WebhookEndpoint(Base):
    """An integrator's URL that receives signed events (``sale.completed``, ...)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = uuid_pk()
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))  # needed in clear to sign every delivery
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)  # [] = all
    description: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class InboundMessage(Base):
    """A reply received from a member (e.g. ``TD`` to an SMS), kept as consent evidence."""

    __tablename__ = "inbound_messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    channel: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(String(2000))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    action: Mapped[str] = mapped_column(String(32), default="none")  # unsubscribed, none
    received_at: Mapped[datetime]
