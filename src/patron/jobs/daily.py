"""The brand-wide daily jobs of the loyalty domains, in the order they must run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from patron.cards import service as cards
from patron.core.clock import Clock
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.members import otp
from patron.messaging import service as messaging
from patron.offers import service as offers


def _points(session: Session, clock: Clock) -> dict[str, int]:
    return loyalty.run_daily(session, clock=clock)


def _tiers(session: Session, clock: Clock) -> dict[str, int]:
    return {"reviewed": loyalty.review_tiers(session, clock=clock)}


def _memberships(session: Session, clock: Clock) -> dict[str, int]:
    return membership.run_daily(session, clock=clock)


def _coupons(session: Session, clock: Clock) -> dict[str, int]:
    return {"expired": offers.expire_due(session, clock=clock)}


def _cards(session: Session, clock: Clock) -> dict[str, int]:
    return dict(cards.run_daily(session, clock=clock))


def _otp(session: Session, clock: Clock) -> dict[str, int]:
    return {"pruned": otp.prune(session, clock=clock)}


def _message_logs(session: Session, clock: Clock) -> dict[str, int]:
    return messaging.purge_message_logs(session, clock=clock,
                                        limit=messaging.PURGE_PER_RUN)


JOBS: list[tuple[str, Callable[[Session, Clock], dict[str, Any]]]] = [
    ("points: release, expiring notices, expiry", _points),
    ("paid memberships: notices, expiry", _memberships),
    ("tiers: end-of-period review", _tiers),
    ("coupons: expiry", _coupons),
    ("stamp rewards, visit packages, gift cards: expiry", _cards),
    ("one-time codes: forget the old ones", _otp),
    ("message logs: remove content past the retention (decision 0004)", _message_logs),
]


def run_all(session: Session, clock: Clock) -> dict[str, int]:
    """Every job in one transaction (the worker's run); counts keyed ``job.counter``."""
    counts: dict[str, int] = {}
    for name, job in JOBS:
        for key, value in job(session, clock).items():
            counts[f"{name.split(':')[0]}.{key}"] = int(value)
    return counts
