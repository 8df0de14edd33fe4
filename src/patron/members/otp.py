"""One-time codes with which a member signs in to their own page by phone.

Design overview
---------------
A member types their phone number; ``issue`` records a *challenge* and hands back a
six-digit code for the caller to send by SMS (the web page queues it through messaging).
``verify`` accepts that code once.

* Nothing that could be replayed is stored in clear: the code is kept as
  HMAC-SHA256(secret, challenge id, code), the phone and the client address as keyed
  hashes (they only need to be counted, never read back).
* A code lives ``CODE_TTL`` (10 minutes) and allows ``MAX_ATTEMPTS`` (5) wrong guesses;
  after that the challenge is dead and a new code must be asked for. A right code is
  consumed, so it cannot be used twice.
* No SMS pumping: a phone gets at most one code per ``RESEND_AFTER`` and
  ``MAX_PER_PHONE`` per day; a client address may ask ``MAX_PER_CLIENT`` times an hour,
  whatever the numbers. Requests for numbers that are not members are recorded and counted
  too (they never get an SMS), so the answer and the limits are the same for every number
  and the form cannot be used to find out who is a member.

The table lives here rather than in ``members/models.py`` because nothing else in the
domain uses it; it is registered with the others in ``core.registry``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from patron.core.clock import Clock
from patron.core.errors import PatronError, ValidationFailed
from patron.core.models import Base, uuid_pk
from patron.members import rules
from patron.members import service as members
from patron.members.models import Member

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)
MAX_PER_PHONE = 5  # codes per phone in any 24 hours
PHONE_WINDOW = timedelta(hours=24)
MAX_PER_CLIENT = 10  # code requests per client address in any hour
CLIENT_WINDOW = timedelta(hours=1)


class MemberOtp(Base):
    """One sign-in challenge: a hashed code for a phone, its expiry and failed attempts."""

    __tablename__ = "member_otps"

    id: Mapped[uuid.UUID] = uuid_pk()
    phone_hash: Mapped[str] = mapped_column(String(64))
    client_hash: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_member_otps_phone_created", "phone_hash", "created_at"),
        Index("ix_member_otps_client_created", "client_hash", "created_at"),
    )


class TooManyRequests(PatronError):
    """A rate limit was hit; ``retry_after`` says how long to wait."""

    def __init__(self, message: str, field: str, *, retry_after: timedelta,
                 code: str = "rate_limited") -> None:
        super().__init__(message, field, code, 429)
        self.retry_after = retry_after


class CodeRefused(PatronError):
    """The code was wrong, expired or used up; ``attempts_left`` for a wrong one."""

    def __init__(self, message: str, *, code: str, attempts_left: int = 0) -> None:
        super().__init__(message, "code", code, 422)
        self.attempts_left = attempts_left


@dataclass(frozen=True)
class Issued:
    """A new challenge: its id (the code form carries it) and the code to send.

    ``member`` is None when the phone belongs to no active member: the caller sends
    nothing, but answers exactly as if it had.
    """

    challenge_id: uuid.UUID
    code: str
    member: Member | None
    phone_e164: str


def _keyed(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def code_hash(secret: str, challenge_id: uuid.UUID, code: str) -> str:
    return _keyed(secret, f"otp:{challenge_id.hex}", code)


def _since(session: Session, column: Mapped[str], value: str, since: datetime) -> list[datetime]:
    return list(session.scalars(select(MemberOtp.created_at).where(
        column == value, MemberOtp.created_at > since).order_by(MemberOtp.created_at)))


def issue(session: Session, *, clock: Clock, secret: str, region: str, phone: str,
          client: str) -> Issued:
    """Start a sign-in for ``phone`` asked from ``client`` (the caller's address).

    Raises ``ValidationFailed`` for a number that is not a phone number, and
    ``TooManyRequests`` when a limit of the module docstring is reached (nothing is
    recorded then).
    """
    e164 = rules.normalise_phone(phone, region, field="phone")
    now = clock.now()
    phone_key = _keyed(secret, "otp-phone", e164)
    client_key = _keyed(secret, "otp-client", client or "-")
    recent = _since(session, MemberOtp.client_hash, client_key, now - CLIENT_WINDOW)
    if len(recent) >= MAX_PER_CLIENT:
        raise TooManyRequests("Too many codes were asked for from here; try again later",
                              "phone", retry_after=recent[0] + CLIENT_WINDOW - now)
    sent = _since(session, MemberOtp.phone_hash, phone_key, now - PHONE_WINDOW)
    if sent and sent[-1] > now - RESEND_AFTER:
        raise TooManyRequests("A code was just sent; wait a minute before asking again",
                              "phone", retry_after=sent[-1] + RESEND_AFTER - now,
                              code="resend_too_soon")
    if len(sent) >= MAX_PER_PHONE:
        raise TooManyRequests("Too many codes for this number today; try again tomorrow",
                              "phone", retry_after=sent[0] + PHONE_WINDOW - now)
    member = members.find_by_phone(session, phone_e164=e164)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    row = MemberOtp(phone_hash=phone_key, client_hash=client_key,
                    member_id=member.id if member else None, code_hash="", created_at=now,
                    expires_at=now + CODE_TTL, attempts=0)
    session.add(row)
    session.flush()
    row.code_hash = code_hash(secret, row.id, code)
    session.flush()
    return Issued(row.id, code, member, e164)


def _consume(session: Session, *, clock: Clock, secret: str, challenge_id: uuid.UUID,
             code: str, accept: Callable[[MemberOtp], bool]) -> MemberOtp:
    """Check ``code`` against the challenge (read under its lock) and consume it; a
    challenge ``accept`` refuses (the caller's own condition) counts as a wrong code,
    whatever was typed."""
    typed = "".join(ch for ch in code if ch.isdigit())
    if len(typed) != CODE_DIGITS:
        raise ValidationFailed(f"Enter the {CODE_DIGITS}-digit code", "code")
    row = session.get(MemberOtp, challenge_id, with_for_update=True)
    now = clock.now()
    if row is None or row.consumed_at is not None:
        raise CodeRefused("This code is no longer valid; ask for a new one", code="code_used")
    if now >= row.expires_at:
        raise CodeRefused("This code has expired; ask for a new one", code="code_expired")
    if row.attempts >= MAX_ATTEMPTS:
        raise CodeRefused("Too many wrong codes; ask for a new one", code="too_many_attempts")
    right = hmac.compare_digest(row.code_hash, code_hash(secret, row.id, typed))
    if not right or not accept(row):
        row.attempts += 1
        session.flush()
        left = MAX_ATTEMPTS - row.attempts
        if left <= 0:
            raise CodeRefused("Too many wrong codes; ask for a new one",
                              code="too_many_attempts")
        raise CodeRefused("That code is not right", code="wrong_code", attempts_left=left)
    row.consumed_at = now
    session.flush()
    return row


def verify(session: Session, *, clock: Clock, secret: str, challenge_id: uuid.UUID,
           code: str) -> uuid.UUID:
    """The member a right code signs in; the challenge is consumed.

    A wrong code counts an attempt (the caller must commit it even though it refuses the
    sign-in); an expired, used-up or unknown challenge is refused as a whole. A challenge
    for a number that is no member's never signs anyone in.
    """
    row = _consume(session, clock=clock, secret=secret, challenge_id=challenge_id, code=code,
                   accept=lambda r: r.member_id is not None)
    assert row.member_id is not None
    return row.member_id


def verify_signup(session: Session, *, clock: Clock, secret: str, challenge_id: uuid.UUID,
                  code: str, phone_e164: str) -> uuid.UUID | None:
    """Prove that whoever signs up holds ``phone_e164``: the code sent to it, once.

    Returns the member the number already belongs to (the caller signs them in instead of
    enrolling anyone twice), or None for a number that is no member's yet. A challenge
    issued for another number counts as a wrong code, so the form's hidden phone field
    cannot be swapped after the SMS went out.
    """
    phone_key = _keyed(secret, "otp-phone", phone_e164)
    row = _consume(session, clock=clock, secret=secret, challenge_id=challenge_id, code=code,
                   accept=lambda r: hmac.compare_digest(r.phone_hash, phone_key))
    return row.member_id


def prune(session: Session, *, clock: Clock) -> int:
    """Forget challenges older than the longest rate-limit window (they count no more)."""
    cutoff = clock.now() - PHONE_WINDOW
    old = list(session.scalars(select(MemberOtp).where(MemberOtp.created_at < cutoff)))
    for row in old:
        session.delete(row)
    session.flush()
    return len(old)

