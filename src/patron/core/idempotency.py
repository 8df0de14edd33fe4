"""Idempotency keys for calls that move value (as Stripe and TigerBeetle do).

Design overview
---------------
A value-moving request carries an ``Idempotency-Key``. The key is *claimed* in a short
transaction of its own (a row in state ``pending`` with a random owner token and a lease),
then the work runs in a second transaction that, as its last statement, marks the key
``done`` and stores the exact response bytes -- only if the row is still ``pending`` and
still owned by this attempt (a fencing token). So:

* a retry of a finished request returns the stored bytes and moves nothing;
* the same key with a different body (another fingerprint) is refused (422);
* a duplicate that arrives while the first attempt runs finds the claim and gets 409;
* if the first attempt crashed after claiming, its lease (``LEASE`` unless the caller
  passes the deployment's ``idempotency_lease_seconds``) expires and a retry takes the key
  over with a new owner token; should the old attempt still finish, its final UPDATE
  matches no row and its transaction rolls back, so the work can never commit twice;
* a request that fails validation deletes its claim: nothing is stored, a corrected retry
  with the same key runs normally.

On SQLite, where every write transaction takes the database lock at ``BEGIN IMMEDIATE``,
no request can ever observe another's claim, so the claim, the work and the stored
response commit in one transaction (one fsync instead of two).

Keys are scoped to the caller (an API key or a user), and the row is kept after its stored
response is pruned (``response`` set to NULL), so a key is unique forever.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, LargeBinary, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from patron.core.clock import Clock
from patron.core.db import Database
from patron.core.errors import Conflict, ValidationFailed
from patron.core.models import Base

#: How long a claim holds by default: longer than any request should take, so a retry never
#: takes over a live attempt in normal operation (if it does, the fencing token still keeps
#: the work from committing twice). Settings.idempotency_lease_seconds overrides it.
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 200


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(8))
    owner: Mapped[str] = mapped_column(String(32))
    lease_until: Mapped[datetime]
    status_code: Mapped[int | None]
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("state IN ('pending','done')", name="state"),)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    replayed: bool


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What a key promises to mean: the same method, path and body bytes."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ValidationFailed("This call moves value: send an Idempotency-Key header",
                               "Idempotency-Key", code="idempotency_key_required")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key has at most {MAX_KEY_LENGTH} characters",
                               "Idempotency-Key")
    return key


def _claim(db: Database, clock: Clock, scope: str, key: str, fp: str, lease: timedelta
           ) -> StoredResponse | str:
    """Claim the key; returns the owner token, or the stored response to replay."""
    owner = secrets.token_hex(16)
    now = clock.now()
    with db.write() as session:
        row = session.get(IdempotencyKey, (scope, key), with_for_update=True)
        if row is None:
            session.add(IdempotencyKey(scope=scope, key=key, fingerprint=fp, state="pending",
                                       owner=owner, lease_until=now + lease, created_at=now))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                raise Conflict("A request with this Idempotency-Key is in progress",
                               "Idempotency-Key", code="idempotency_in_progress") from None
            return owner
        if row.fingerprint != fp or row.state == "done":
            return _replay(row, fp)
        if row.lease_until > now:
            raise Conflict("A request with this Idempotency-Key is in progress",
                           "Idempotency-Key", code="idempotency_in_progress")
        row.owner, row.lease_until = owner, now + lease  # the first attempt died: take over
        return owner


def _run_serialised(
    db: Database, *, clock: Clock, scope: str, key: str, fingerprint_: str,
    work: Callable[[Session], tuple[int, bytes]],
) -> StoredResponse:
    """SQLite: every write transaction holds the database lock from its first statement
    (``BEGIN IMMEDIATE``), so no other request can see the key half-done. Claim, work and
    the stored response commit together -- one fsync instead of two."""
    with db.write() as session:
        row = session.get(IdempotencyKey, (scope, key))
        if row is not None:
            return _replay(row, fingerprint_)
        status_code, body = work(session)
        now = clock.now()
        session.add(IdempotencyKey(scope=scope, key=key, fingerprint=fingerprint_, state="done",
                                   owner="-", lease_until=now, status_code=status_code,
                                   response=body, created_at=now, completed_at=now))
    return StoredResponse(status_code, body, replayed=False)


def _replay(row: IdempotencyKey, fp: str) -> StoredResponse:
    if row.fingerprint != fp:
        raise ValidationFailed(
            "This Idempotency-Key was used with a different request",
            "Idempotency-Key", code="idempotency_key_reused")
    if row.state != "done":
        raise Conflict("A request with this Idempotency-Key is in progress",
                       "Idempotency-Key", code="idempotency_in_progress")
    if row.response is None or row.status_code is None:
        raise Conflict("This Idempotency-Key was used long ago; its response is gone",
                       "Idempotency-Key", code="idempotency_key_expired")
    return StoredResponse(row.status_code, row.response, replayed=True)


def run(
    db: Database, *, clock: Clock, scope: str, key: str, fingerprint_: str,
    work: Callable[[Session], tuple[int, bytes]], lease: timedelta = LEASE,
) -> StoredResponse:
    """Run ``work`` at most once for (scope, key); see the module docstring. ``lease`` is how
    long this attempt's claim holds before a retry may presume it dead and take the key
    over; serialised SQLite commits claim and work together, so it needs no lease."""
    if db.engine.dialect.name == "sqlite" and db.serialised_writes:
        return _run_serialised(db, clock=clock, scope=scope, key=key, fingerprint_=fingerprint_,
                               work=work)
    claim = _claim(db, clock, scope, key, fingerprint_, lease)
    if isinstance(claim, StoredResponse):
        return claim
    owner = claim
    try:
        with db.write() as session:
            status_code, body = work(session)
            done = session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key,
                       IdempotencyKey.state == "pending", IdempotencyKey.owner == owner)
                .values(state="done", status_code=status_code, response=body,
                        completed_at=clock.now())
            )
            if getattr(done, "rowcount", 0) != 1:
                raise Conflict("This request's Idempotency-Key was taken over by a retry",
                               "Idempotency-Key", code="idempotency_in_progress")
        return StoredResponse(status_code, body, replayed=False)
    except BaseException:
        # validation failed or the work crashed: its transaction rolled back, so forget the
        # claim and let a (corrected) retry run
        _release(db, scope, key, owner)
        raise


def _release(db: Database, scope: str, key: str, owner: str) -> None:
    """Forget a claim whose work failed, so nothing is stored for a failed request."""
    with db.write() as session:
        session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key,
            IdempotencyKey.owner == owner, IdempotencyKey.state == "pending"))


def prune_responses(session: Session, *, older_than: datetime) -> int:
    """Drop stored responses of old keys but keep the keys, so they stay unique forever."""
    result = session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.state == "done", IdempotencyKey.completed_at < older_than,
               IdempotencyKey.response.is_not(None))
        .values(response=None))
    return int(getattr(result, "rowcount", 0) or 0)


def lookup(session: Session, scope: str, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.scope == scope, IdempotencyKey.key == key))
