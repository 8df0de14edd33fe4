"""Use cases of messaging: queue a message once, decide at send time whether it may go,
record what the provider said, take replies and unsubscribes, re-send dead letters.

Every rule of DESIGN.md rule 5 is enforced here and only here, at the moment of sending
(:func:`gate`), not when the message was queued: a member who replies ``TD`` at 10:00 gets
no marketing message at 10:01 even if it was queued at 09:00.

- Marketing needs the channel's consent; a member under 14 also needs a guardian's
  consent on record (PIPL art. 31). Transactional messages (receipts) need consent only
  when their rule says so (``requires_consent`` in the message's payload).
- Marketing is not sent in the store's quiet hours: it is deferred to the first allowed
  instant in the store's time zone, never dropped.
- At most ``weekly_cap`` marketing messages per member in any rolling 7 days; a message
  over the cap is suppressed with the reason ``frequency_cap`` (counted, not lost
  silently), because a greeting or offer delivered a week late is worse than none.

Delivery is at least once: a worker killed between the provider's acceptance and the
commit of the result sends the message again when its lease runs out, with the same
stable reference (e-mail Message-ID, webhook delivery id, Aliyun OutId) so the receiver
can recognise it. A message row exists once per dedupe key, so no rule, campaign or event
can cause a second message for the same occasion.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import NotFound, ValidationFailed
from patron.core.ids import new_id
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.enums import Channel, MemberStatus
from patron.members.models import Member, Store
from patron.messaging.channels.base import SendResult, SendStatus
from patron.messaging.models import InboundMessage, Message, MessageEvent, MessagingPolicy
from patron.messaging.quiet_hours import next_allowed_time

#: Words that withdraw SMS consent when a member replies with them (China and the West).
STOP_WORDS = frozenset({"T", "TD", "N", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END",
                        "QUIT", "退订", "退订T", "取消"})
#: Templates whose text is a secret (a one-time code): kept only until sent.
SECRET_TEMPLATES = frozenset({"otp"})
REDACTED = "(one-time code: not kept after sending)"
LEASE = timedelta(seconds=90)  # a worker that has not reported back by then is presumed dead
MIN_AGE_WITHOUT_GUARDIAN = 14
BACKOFF_BASE_S = 30
BACKOFF_MAX_S = 6 * 3600


# ---------------------------------------------------------------- policy


def get_policy(session: Session, *, clock: Clock) -> MessagingPolicy:
    """The brand's sending rules (created with defaults on first use)."""
    policy = session.get(MessagingPolicy, 1)
    if policy is None:
        try:
            with session.begin_nested():
                session.add(MessagingPolicy(id=1, updated_at=clock.now()))
        except IntegrityError:
            pass
        policy = session.get(MessagingPolicy, 1, populate_existing=True)
        assert policy is not None
    return policy


# ---------------------------------------------------------------- queue


@dataclass(frozen=True, kw_only=True)
class Outgoing:
    """A rendered message to queue; see :class:`~patron.messaging.models.Message`."""

    dedupe_key: str
    channel: str
    purpose: str
    template: str
    language: str
    recipient: str
    body: str
    subject: str = ""
    html: str | None = None
    segments: int | None = None
    member_id: uuid.UUID | None = None
    store_id: uuid.UUID | None = None
    endpoint_id: uuid.UUID | None = None
    campaign_id: uuid.UUID | None = None
    source_event_id: uuid.UUID | None = None
    payload: dict[str, Any] | None = None
    not_before: datetime | None = None


def enqueue(session: Session, *, clock: Clock, messages: list[Outgoing]) -> list[uuid.UUID]:
    """Queue messages in the caller's transaction; a dedupe key already queued is skipped.

    Returns the ids of the messages that were new. Many at once (a campaign) go in one
    statement per 1,000.
    """
    return list(enqueue_by_key(session, clock=clock, messages=messages).values())


def enqueue_by_key(session: Session, *, clock: Clock, messages: list[Outgoing]
                   ) -> dict[str, uuid.UUID]:
    """:func:`enqueue`, answering which new message id belongs to which dedupe key (callers
    that record the message against their own row need that)."""
    now = clock.now()
    new_ids: dict[str, uuid.UUID] = {}
    for start in range(0, len(messages), 1000):
        rows = []
        for m in messages[start:start + 1000]:
            if m.purpose not in ("transactional", "marketing"):
                raise ValidationFailed("purpose is transactional or marketing", "purpose")
            if not m.recipient:
                raise ValidationFailed("A message needs a recipient", "recipient")
            rows.append({
                "id": new_id(), "dedupe_key": m.dedupe_key[:200], "channel": m.channel,
                "purpose": m.purpose, "template": m.template, "language": m.language,
                "member_id": m.member_id, "store_id": m.store_id, "endpoint_id": m.endpoint_id,
                "campaign_id": m.campaign_id, "source_event_id": m.source_event_id,
                "recipient": m.recipient, "subject": m.subject[:300], "body": m.body,
                "html": m.html, "payload": m.payload or {}, "segments": m.segments,
                "status": "queued", "attempts": 0, "not_before": m.not_before or now,
                "created_at": now, "updated_at": now,
            })
        dialect = session.get_bind().dialect.name
        stmt: Any = (postgresql.insert(Message) if dialect == "postgresql"
                     else sqlite.insert(Message))
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
            Message.dedupe_key, Message.id)
        # one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id per batch (SQLAlchemy's
        # "insertmanyvalues"); rows skipped as duplicates return nothing
        new_ids.update((key, message_id) for key, message_id in session.execute(stmt, rows))
    return new_ids


def _event(session: Session, message: Message, at: datetime, status: str, detail: str = ""
           ) -> None:
    session.add(MessageEvent(message_id=message.id, at=at, status=status, detail=detail[:1000]))


# ---------------------------------------------------------------- the gate


@dataclass(frozen=True)
class Decision:
    """What :func:`gate` decided: ``send``, ``defer`` (until ``until``) or ``suppress``."""

    action: str
    reason: str = ""
    until: datetime | None = None


SEND = Decision("send")


def age_on(member: Member, day: date) -> int | None:
    """Whole years of age on ``day``, if the member gave a solar birth year and date."""
    if member.birth_year is None or member.birth_month is None or member.birth_day is None:
        return None
    if member.birthday_calendar == "lunar":  # lunar month/day: compare by the year only,
        return day.year - member.birth_year  # erring towards the younger age below
    had_birthday = (day.month, day.day) >= (member.birth_month, member.birth_day)
    return day.year - member.birth_year - (0 if had_birthday else 1)


def _is_minor_without_guardian(member: Member, today: date) -> bool:
    age = age_on(member, today)
    if member.birthday_calendar == "lunar" and age is not None:
        age -= 1  # the lunar birthday may not have passed yet this solar year
    return age is not None and age < MIN_AGE_WITHOUT_GUARDIAN and not member.guardian_consent


def _has_consent(member: Member, channel: str) -> bool:
    if channel == Channel.SMS.value:
        return member.sms_consent
    if channel == Channel.EMAIL.value:
        return member.email_consent
    return True


def marketing_sent_since(session: Session, *, member_id: uuid.UUID, since: datetime) -> int:
    """Marketing messages that went (or are going) to a member since ``since``."""
    return int(session.scalar(select(func.count()).select_from(Message).where(
        Message.member_id == member_id, Message.purpose == "marketing",
        Message.status.in_(("sending", "sent", "delivered")),
        Message.sent_at >= since)) or 0)


def gate(session: Session, *, clock: Clock, message: Message, policy: MessagingPolicy,
         member: Member | None, store: Store | None) -> Decision:
    """May this message go now? Consent, age, quiet hours and the weekly cap, in that order.

    Consent is checked before the quiet hours so that a withdrawn consent suppresses at
    once rather than after a deferral.
    """
    if message.member_id is None:
        return SEND  # a webhook to an integrator or a test send to staff
    if member is None or member.status != MemberStatus.ACTIVE.value:
        return Decision("suppress", "member_inactive")
    now = clock.now()
    marketing = message.purpose == "marketing"
    needs_consent = marketing or bool((message.payload or {}).get("requires_consent"))
    if needs_consent and not _has_consent(member, message.channel):
        return Decision("suppress", "no_consent")
    if not marketing:
        return SEND
    tz = store.timezone if store is not None else "UTC"
    if _is_minor_without_guardian(member, now.date()):
        return Decision("suppress", "minor_without_guardian")
    allowed = next_allowed_time(now, tz, policy.quiet_start, policy.quiet_end)
    if allowed > now:
        return Decision("defer", "quiet_hours", allowed)
    if policy.weekly_cap >= 0 and marketing_sent_since(
            session, member_id=member.id, since=now - timedelta(days=7)) >= policy.weekly_cap:
        return Decision("suppress", "frequency_cap")
    return SEND


# ---------------------------------------------------------------- delivery bookkeeping


@dataclass(frozen=True)
class Claimed:
    """A message leased to this worker, with what the channel needs to send it."""

    id: uuid.UUID
    channel: str
    recipient: str
    subject: str
    body: str
    html: str | None
    template: str
    payload: dict[str, Any]
    attempt: int
    endpoint_id: uuid.UUID | None = None


def claim_due(session: Session, *, clock: Clock, limit: int = 100,
              channels: set[str] | None = None, lease: timedelta = LEASE) -> list[Claimed]:
    """Lease up to ``limit`` due messages to this worker, applying the gate first.

    Due: queued with ``not_before`` passed, or ``sending`` with an expired lease (a worker
    died mid-send). On PostgreSQL rows are taken ``FOR UPDATE SKIP LOCKED`` so several
    workers share the queue without waiting on each other.
    """
    now = clock.now()
    stmt = (select(Message)
            .where(((Message.status == "queued") & (Message.not_before <= now))
                   | ((Message.status == "sending") & (Message.lease_until < now)))
            .order_by(Message.not_before).limit(limit))
    if channels is not None:
        stmt = stmt.where(Message.channel.in_(sorted(channels)))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    if not rows:
        return []
    policy = get_policy(session, clock=clock)
    member_ids = {m.member_id for m in rows if m.member_id}
    store_ids = {m.store_id for m in rows if m.store_id}
    people = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(member_ids)))
              } if member_ids else {}
    stores = {s.id: s for s in session.scalars(select(Store).where(Store.id.in_(store_ids)))
              } if store_ids else {}
    claimed: list[Claimed] = []
    for message in rows:
        member = people.get(message.member_id) if message.member_id else None
        store = stores.get(message.store_id) if message.store_id else None
        if store is None and member is not None:
            store = session.get(Store, member.home_store_id)
        decision = gate(session, clock=clock, message=message, policy=policy, member=member,
                        store=store)
        if decision.action == "suppress":
            message.status, message.reason, message.updated_at = "suppressed", decision.reason, now
            message.lease_until = None
            _event(session, message, now, "suppressed", decision.reason)
            continue
        if decision.action == "defer":
            assert decision.until is not None
            message.status, message.not_before = "queued", decision.until
            message.reason, message.updated_at, message.lease_until = decision.reason, now, None
            _event(session, message, now, "deferred",
                   f"{decision.reason} until {decision.until.isoformat()}")
            continue
        message.status, message.lease_until = "sending", now + lease
        message.attempts += 1
        message.updated_at = now
        if message.purpose == "marketing":
            message.sent_at = now  # counts towards the weekly cap from this moment
        claimed.append(Claimed(message.id, message.channel, message.recipient, message.subject,
                               message.body, message.html, message.template,
                               dict(message.payload or {}), message.attempts,
                               message.endpoint_id))
    session.flush()
    return claimed


def still_mine(session: Session, *, clock: Clock, message_id: uuid.UUID, attempt: int,
               lease: timedelta = LEASE) -> bool:
    """Renew the lease on a message just before sending it; False when another worker has
    taken it over meanwhile (its lease ran out while this worker was busy with the rest of
    its batch). The attempt number is the fencing token: every claim increments it."""
    result = session.execute(
        update(Message).where(Message.id == message_id, Message.status == "sending",
                              Message.attempts == attempt)
        .values(lease_until=clock.now() + lease)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def backoff(attempt: int, *, rng: random.Random | None = None,
            retry_after_s: float | None = None) -> timedelta:
    """Exponential backoff with full jitter (30 s, 1 min, 2 min ... capped at 6 h); a
    provider's Retry-After is honoured when it asks for longer."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
    seconds = (rng or random).uniform(ceiling / 2, ceiling)
    if retry_after_s is not None:
        seconds = max(seconds, min(retry_after_s, BACKOFF_MAX_S))
    return timedelta(seconds=seconds)


def record_result(session: Session, *, clock: Clock, message_id: uuid.UUID,
                  result: SendResult) -> Message:
    """Book what the channel said: sent, retry later, dead after too many tries, or failed."""
    message = session.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if message is None:
        raise NotFound("No such message", "message_id")
    now = clock.now()
    message.updated_at, message.lease_until = now, None
    if message.template in SECRET_TEMPLATES and (result.ok or result.status is
                                                 SendStatus.PERMANENT):
        # a one-time code is needed until it has gone, never after: don't keep it
        message.body, message.html, message.payload = REDACTED, None, {}
    if result.ok:
        message.status = "sent"
        message.sent_at = message.sent_at or now
        message.provider_id = result.provider_message_id
        message.reason = None
        _event(session, message, now, "sent",
               f"{result.provider} {result.provider_message_id or ''}".strip())
    elif result.status is SendStatus.RETRYABLE:
        policy = get_policy(session, clock=clock)
        if message.attempts >= policy.max_attempts:
            message.status, message.reason = "dead", result.reason[:200]
            _event(session, message, now, "dead", result.reason)
        else:
            message.status = "queued"
            message.sent_at = None if message.purpose == "marketing" else message.sent_at
            message.not_before = now + backoff(message.attempts,
                                               retry_after_s=result.retry_after_s)
            message.reason = result.reason[:200]
            _event(session, message, now, "retry", result.reason)
    else:
        message.status, message.reason = "failed", result.reason[:200]
        message.sent_at = None
        _event(session, message, now, "failed", result.reason)
    session.flush()
    return message


def record_delivery(session: Session, *, clock: Clock, provider_message_id: str,
                    delivered: bool, detail: str = "") -> Message | None:
    """A provider's delivery report (status callback): delivered or failed after sending."""
    message = session.scalar(select(Message).where(
        Message.provider_id == provider_message_id).with_for_update())
    if message is None:
        return None
    now = clock.now()
    if message.status in ("sent", "sending", "delivered", "failed"):
        message.status = "delivered" if delivered else "failed"
        message.delivered_at = now if delivered else None
        message.reason = None if delivered else detail[:200]
        message.updated_at = now
    _event(session, message, now, "delivered" if delivered else "undelivered", detail)
    session.flush()
    return message


def resend(session: Session, *, clock: Clock, actor: Principal | None,
           message_id: uuid.UUID) -> Message:
    """Put a dead letter (or a failed message) back in the queue, audited in its history."""
    message = session.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if message is None:
        raise NotFound("No such message", "message_id")
    if message.status not in ("dead", "failed"):
        raise ValidationFailed("Only dead or failed messages can be re-sent", "message_id",
                               code="not_resendable")
    if message.purged_at is not None:  # its text and address are gone (log retention)
        raise ValidationFailed("This message's content was removed after the retention "
                               "period; it cannot be re-sent", "message_id", code="purged")
    now = clock.now()
    message.status, message.attempts, message.not_before = "queued", 0, now
    message.reason, message.updated_at, message.sent_at = None, now, None
    _event(session, message, now, "requeued",
           f"by {actor.label if actor else 'system'}")
    session.flush()
    return message


def endpoint_secret(session: Session, *, endpoint_id: uuid.UUID) -> str:
    """The signing secret of one webhook endpoint (the worker signs each delivery with it)."""
    from patron.messaging.models import WebhookEndpoint

    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint", "endpoint_id")
    return endpoint.secret


def dead_letters(session: Session, *, limit: int = 100) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.status == "dead")
                                .order_by(Message.updated_at.desc()).limit(limit)))


def history(session: Session, *, message_id: uuid.UUID) -> list[MessageEvent]:
    return list(session.scalars(select(MessageEvent).where(MessageEvent.message_id == message_id)
                                .order_by(MessageEvent.seq)))


def member_messages(session: Session, *, member_id: uuid.UUID, limit: int = 50
                    ) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.member_id == member_id)
                                .order_by(Message.created_at.desc()).limit(limit)))


def status_counts(session: Session) -> dict[str, int]:
    return {status: int(n) for status, n in session.execute(
        select(Message.status, func.count()).group_by(Message.status))}


# ---------------------------------------------------------------- replies and unsubscribes


def is_stop_word(text: str) -> bool:
    """Does this reply withdraw consent? ``T``, ``TD``, ``STOP``, ``退订``... (any case)."""
    return text.strip().upper().rstrip(".!。！") in STOP_WORDS


def receive_sms(session: Session, *, clock: Clock, sender: str, text: str,
                region: str) -> InboundMessage:
    """An SMS reply from a member: a stop word withdraws SMS consent at once (evidence kept).

    Marketing still queued for the member is suppressed when the worker reaches it, since
    the gate reads consent at send time.
    """
    from patron.members import rules as member_rules

    try:
        phone = member_rules.normalise_phone(sender, region, field="from")
    except ValidationFailed:
        phone = sender
    member = members.find_by_phone(session, phone_e164=phone)
    action = "none"
    if member is not None and is_stop_word(text):
        members.change_consent(session, clock=clock, actor=None, member_id=member.id,
                               channel=Channel.SMS, granted=False, source="sms_reply",
                               note=f"replied {text.strip()[:20]!r}")
        action = "unsubscribed"
    inbound = InboundMessage(channel="sms", sender=phone, text=text[:2000],
                             member_id=member.id if member else None, action=action,
                             received_at=clock.now())
    session.add(inbound)
    session.flush()
    return inbound


def unsubscribe_token(secret: str, member_id: uuid.UUID, channel: str) -> str:
    """A link token that withdraws one channel's consent for one member, unforgeable."""
    payload = f"{member_id.hex}.{channel}"
    mac = hmac.new(secret.encode(), f"unsubscribe:{payload}".encode(), hashlib.sha256)
    return f"{payload}.{mac.hexdigest()[:32]}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[uuid.UUID, Channel]:
    """The member and channel of a valid token; a forged or damaged one is refused."""
    try:
        member_hex, channel, mac = token.split(".")
        member_id = uuid.UUID(hex=member_hex)
        parsed = Channel(channel)
    except ValueError:
        raise ValidationFailed("This unsubscribe link is not valid", "token") from None
    expected = unsubscribe_token(secret, member_id, parsed.value).rsplit(".", 1)[1]
    if not hmac.compare_digest(expected, mac):
        raise ValidationFailed("This unsubscribe link is not valid", "token")
    return member_id, parsed


def unsubscribe(session: Session, *, clock: Clock, secret: str, token: str) -> Member:
    """One-click unsubscribe from a link in a message (RFC 8058 for e-mail)."""
    member_id, channel = read_unsubscribe_token(secret, token)
    return members.change_consent(session, clock=clock, actor=None, member_id=member_id,
                                  channel=channel, granted=False, source="link",
                                  note="unsubscribe link")


def ids_by_key(session: Session, *, dedupe_keys: Sequence[str]) -> dict[str, uuid.UUID]:
    """The message recorded under each dedupe key, new or old (keys without one are left
    out): a caller that queued a batch points its own rows at what was queued."""
    found: dict[str, uuid.UUID] = {}
    keys = [k[:200] for k in dedupe_keys]
    for start in range(0, len(keys), 1000):
        for key, message_id in session.execute(select(Message.dedupe_key, Message.id).where(
                Message.dedupe_key.in_(keys[start:start + 1000]))):
            found[key] = message_id
    return found


def suppress_campaign(session: Session, *, clock: Clock, campaign_id: uuid.UUID,
                      reason: str) -> int:
    """A campaign's member messages still queued become ``suppressed`` with ``reason``
    (pause, cancel): the transition the gate makes, and only from ``queued``, so a message
    a worker has already leased is left to finish."""
    result = session.execute(
        update(Message).where(Message.campaign_id == campaign_id, Message.status == "queued",
                              Message.member_id.is_not(None))
        .values(status="suppressed", reason=reason, updated_at=clock.now())
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def campaign_suppressed(campaign_id: uuid.UUID, *, reason: str) -> Select[uuid.UUID]:
    """The ids of a campaign's messages suppressed for ``reason``, as a subquery (a resumed
    campaign sends those members again)."""
    return select(Message.id).where(Message.campaign_id == campaign_id,
                                    Message.status == "suppressed", Message.reason == reason)


def suppress_queued_for(session: Session, *, clock: Clock, member_id: uuid.UUID,
                        channel: str) -> int:
    """Suppress marketing already queued for a member on a channel (after an opt-out), so
    the admin's queue shows it at once rather than when the worker reaches it."""
    now = clock.now()
    result = session.execute(
        update(Message).where(Message.member_id == member_id, Message.channel == channel,
                              Message.purpose == "marketing", Message.status == "queued")
        .values(status="suppressed", reason="no_consent", updated_at=now)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# ---------------------------------------------------------------- admin reads (care pages)
# Added for the web admin's outbox page (web/pages/care_inbox.py): the queue filtered and
# counted the way staff look at it, scoped to the stores the viewer runs, as the API's
# /messages endpoints scope it.

MESSAGE_STATUSES = ("queued", "sending", "sent", "delivered", "failed", "dead", "suppressed")
MESSAGE_CHANNELS = ("sms", "email", "webhook")
MAX_MESSAGE_PAGE = 500


@dataclass(frozen=True, kw_only=True)
class MessageFilter:
    """Which messages an outbox view shows; ``since``/``until`` bound ``created_at``
    (``until`` excluded). ``None`` means no restriction."""

    status: str | None = None
    channel: str | None = None
    store_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


def _message_scope(actor: Principal, filters: MessageFilter, *, with_status: bool
                   ) -> list[Any]:
    """The WHERE clauses of a filtered view, after checking the viewer may see it.

    Managers and owners only; a manager sees the messages of their own stores (messages
    of no store -- webhooks to integrators -- are the owner's).
    """
    from patron.auth.enums import Role
    from patron.auth.principal import require_role, require_store

    require_role(actor, Role.MANAGER)
    if filters.status is not None and filters.status not in MESSAGE_STATUSES:
        raise ValidationFailed(f"status is one of {', '.join(MESSAGE_STATUSES)}", "status")
    if filters.channel is not None and filters.channel not in MESSAGE_CHANNELS:
        raise ValidationFailed(f"channel is one of {', '.join(MESSAGE_CHANNELS)}", "channel")
    for name, value in (("since", filters.since), ("until", filters.until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("Give a time zone", name)
    clauses: list[Any] = []
    if filters.store_id is not None:
        require_store(actor, filters.store_id)
        clauses.append(Message.store_id == filters.store_id)
    else:
        visible = actor.visible_store_ids()
        if visible is not None:
            clauses.append(Message.store_id.in_(sorted(visible)))
    if with_status and filters.status is not None:
        clauses.append(Message.status == filters.status)
    if filters.channel is not None:
        clauses.append(Message.channel == filters.channel)
    if filters.since is not None:
        clauses.append(Message.created_at >= filters.since)
    if filters.until is not None:
        clauses.append(Message.created_at < filters.until)
    return clauses


def list_messages_for(session: Session, *, actor: Principal, filters: MessageFilter,
                      limit: int = 50, offset: int = 0) -> list[Message]:
    """The messages of a filtered view the actor may see, newest first."""
    if not 1 <= limit <= MAX_MESSAGE_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_MESSAGE_PAGE}", "limit")
    if offset < 0:
        raise ValidationFailed("offset is 0 or more", "offset")
    clauses = _message_scope(actor, filters, with_status=True)
    return list(session.scalars(select(Message).where(*clauses)
                                .order_by(Message.created_at.desc(), Message.id.desc())
                                .limit(limit).offset(offset)))


def count_messages_for(session: Session, *, actor: Principal, filters: MessageFilter
                       ) -> dict[str, int]:
    """How many messages of the view are in each status (every status present, zeros
    included); the filter's own ``status`` is ignored, so the counts can sit above a list
    narrowed to one of them."""
    clauses = _message_scope(actor, filters, with_status=False)
    counts = dict.fromkeys(MESSAGE_STATUSES, 0)
    for status, n in session.execute(select(Message.status, func.count()).where(*clauses)
                                     .group_by(Message.status)):
        counts[status] = int(n)
    return counts


def message_for(session: Session, *, actor: Principal, message_id: uuid.UUID) -> Message:
    """One message, if the actor (a manager of its store, or the owner) may see it."""
    from patron.auth.enums import Role
    from patron.auth.principal import require_role
    from patron.core.errors import PermissionDenied

    require_role(actor, Role.MANAGER)
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound("No such message", "message_id")
    if not actor.all_stores and (message.store_id is None
                                 or not actor.can_access_store(message.store_id)):
        raise PermissionDenied("This belongs to a store you don't have access to")
    return message


# ---------------------------------------------------------------- policy and test sends (admin)
# Added for the web admin's messaging settings: the same rules the API's PATCH
# /messaging/policy applies, kept in the service so the page and the API agree, and a
# test message to a member of staff through the real outbox and channel.

POLICY_FIELDS = ("quiet_start", "quiet_end", "weekly_cap", "max_attempts",
                 "log_retention_days")


def update_policy(session: Session, *, clock: Clock, actor: Principal,
                  changes: dict[str, Any]) -> MessagingPolicy:
    """An owner changes quiet hours (each store's local time), the weekly marketing cap
    (0 = no marketing at all), the delivery attempts or how many days finished messages
    keep their content (``purge_message_logs``); audited."""
    require_role(actor, Role.OWNER, users_only=True)
    for key, value in changes.items():
        if key not in POLICY_FIELDS:
            raise ValidationFailed(f"Unknown messaging setting {key!r}", key)
        if key in ("quiet_start", "quiet_end") and not isinstance(value, time):
            raise ValidationFailed("Enter a time such as 21:00", key)
    policy = get_policy(session, clock=clock)
    start = changes.get("quiet_start", policy.quiet_start)
    end = changes.get("quiet_end", policy.quiet_end)
    if start == end:
        raise ValidationFailed("Quiet hours must end at another time than they start",
                               "quiet_end")
    if "weekly_cap" in changes and not 0 <= changes["weekly_cap"] <= 100:
        raise ValidationFailed("The weekly cap is between 0 and 100", "weekly_cap")
    if "max_attempts" in changes and not 1 <= changes["max_attempts"] <= 50:
        raise ValidationFailed("Delivery attempts are between 1 and 50", "max_attempts")
    low, high = RETENTION_DAYS
    if "log_retention_days" in changes and not low <= changes["log_retention_days"] <= high:
        raise ValidationFailed(f"Message logs are kept between {low} and {high} days",
                               "log_retention_days")
    changed = {k: v for k, v in changes.items() if getattr(policy, k) != v}
    for key, value in changed.items():
        setattr(policy, key, value)
    if changed:
        policy.updated_at = clock.now()
        session.flush()
        audit.record(session, clock=clock, actor=actor, action="messaging.policy_changed",
                     entity_type="messaging_policy", entity_id="1",
                     details={k: str(v) for k, v in changed.items()})
    return policy


def send_test_message(session: Session, *, clock: Clock, actor: Principal, channel: str,
                      recipient: str, region: str, language: str) -> uuid.UUID:
    """Queue a short transactional test to a member of staff's own phone or address.

    It goes through the outbox and the configured channel like any message (so it proves
    the provider settings), names no member (so no consent or cap applies) and is audited.
    """
    require_role(actor, Role.OWNER, users_only=True)
    if channel == Channel.SMS.value:
        address = member_rules.normalise_phone(recipient, region, field="recipient")
    elif channel == Channel.EMAIL.value:
        address = recipient.strip()
        local, _, domain = address.partition("@")
        if not local or "." not in domain or " " in address or len(address) > 254:
            raise ValidationFailed("Enter a valid e-mail address", "recipient")
    else:
        raise ValidationFailed("Choose SMS or e-mail", "channel")
    body = ("patron: this is a test message from the admin. 这是一条测试消息。"
            if language != "en" else "patron: this is a test message from the admin.")
    ids = enqueue(session, clock=clock, messages=[Outgoing(
        dedupe_key=f"test:{new_id()}", channel=channel, purpose="transactional",
        template="test", language=language, recipient=address, body=body,
        subject="patron test message")])
    if not ids:  # pragma: no cover - the dedupe key is new every time
        raise ValidationFailed("The test message was not queued", "recipient")
    audit.record(session, clock=clock, actor=actor, action="messaging.test_sent",
                 entity_type="message", entity_id=ids[0],
                 details={"channel": channel})
    return ids[0]


def policy_for_display(session: Session) -> MessagingPolicy:
    """The brand's sending rules for a page to show, without writing: the stored row, or
    an unsaved one holding the column defaults (:func:`get_policy` creates the row, which
    a read-only request should not do)."""
    policy = session.get(MessagingPolicy, 1)
    if policy is not None:
        return policy
    columns = MessagingPolicy.__table__.c
    defaults = {name: columns[name].default.arg
                for name in POLICY_FIELDS}
    return MessagingPolicy(id=1, **defaults)


# ---------------------------------------------------------------- log retention
# Decision 0004: a finished message keeps its row -- its dedupe key (so the occasion is
# never messaged twice), status, times, campaign and member ids (attribution, caps,
# statistics) -- but loses what is personal in it (address, text, provider answers) once
# it is older than the brand's ``log_retention_days``.

#: The retention an owner may set, in days: at least a quarter (complaints about a message
#: and delivery disputes come within weeks), at most ten years.
RETENTION_DAYS = (90, 3650)
#: States a message never leaves by itself; only these are purged (queued and sending
#: messages still need their content).
FINISHED = ("sent", "delivered", "failed", "dead", "suppressed")
PURGE_BATCH = 500
#: The most messages one nightly run purges: the daily jobs share one transaction, so this
#: bounds how long it holds SQLite's write lock; a backlog (retention shortened, or a first
#: run on years of messages) drains over the following nights.
PURGE_PER_RUN = 50_000


def _expire_loaded(session: Session, message_ids: set[uuid.UUID]) -> None:
    """Forget what the session holds of purged messages and their events (the UPDATEs
    went to the database only; reading the ids back for the session would cost more)."""
    for obj in list(session.identity_map.values()):
        if (isinstance(obj, Message) and obj.id in message_ids) or (
                isinstance(obj, MessageEvent) and obj.message_id in message_ids):
            session.expire(obj)


def purge_message_logs(session: Session, *, clock: Clock, batch: int = PURGE_BATCH,
                       limit: int | None = None,
                       checkpoint: Callable[[], None] | None = None) -> dict[str, int]:
    """Blank the personal content of finished messages past the brand's retention.

    Works ``batch`` messages at a time, oldest first, each batch two short UPDATEs keyed
    by primary key, and stops after ``limit`` messages (None: all that are due). A caller
    whose session does nothing else may pass ``checkpoint`` (its commit), run after each
    batch, so a big purge never holds its locks for long. Purged rows get ``purged_at``
    and leave the partial index the next run reads, so running again finds nothing to do.
    """
    if batch < 1:
        raise ValidationFailed("batch is 1 or more", "batch")
    if limit is not None and limit < 1:
        raise ValidationFailed("limit is 1 or more", "limit")
    policy = get_policy(session, clock=clock)
    now = clock.now()
    cutoff = now - timedelta(days=policy.log_retention_days)
    purged = events = 0
    while limit is None or purged < limit:
        size = batch if limit is None else min(batch, limit - purged)
        ids = list(session.scalars(
            select(Message.id).where(Message.purged_at.is_(None), Message.created_at < cutoff,
                                     Message.status.in_(FINISHED))
            .order_by(Message.created_at, Message.id).limit(size)))
        if not ids:
            break
        session.execute(update(Message).where(Message.id.in_(ids)).values(
            recipient="", subject="", body="", html=None, payload={}, purged_at=now)
            .execution_options(synchronize_session=False))
        result = session.execute(
            update(MessageEvent).where(MessageEvent.message_id.in_(ids),
                                       MessageEvent.detail != "").values(detail="")
            .execution_options(synchronize_session=False))
        _expire_loaded(session, set(ids))
        purged += len(ids)
        events += int(getattr(result, "rowcount", 0) or 0)
        if checkpoint is not None:
            checkpoint()
    session.flush()
    return {"purged": purged, "events_blanked": events}
