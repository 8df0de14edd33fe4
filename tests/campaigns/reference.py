"""A plain-Python evaluation of segment rules over in-memory facts: the oracle the SQL
compilation is compared with. Written from the rules' documentation, not from the SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


@dataclass
class SaleFact:
    occurred_at: datetime
    status: str  # completed, refunded
    total_minor: int
    refunded_minor: int
    lines: list[tuple[uuid.UUID, uuid.UUID, int, int]]  # product, category, qty, refunded qty


@dataclass
class ScoreFact:
    rfm_segment: str | None
    p_alive: float | None
    clv_minor: int | None
    lifecycle_stage: str
    loyalty_type: str
    next_purchase_on: date | None


@dataclass
class MemberFact:
    id: uuid.UUID
    home_store_id: uuid.UUID
    joined_at: datetime
    status: str = "active"
    tier: str | None = None
    tags: set[str] = field(default_factory=set)
    birthday_calendar: str | None = None
    birth_month: int | None = None
    sms_consent: bool = False
    email_consent: bool = False
    gender: str | None = None
    sales: list[SaleFact] = field(default_factory=list)
    redemptions: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    wallet_minor: int | None = None
    points: int | None = None
    complaints: list[tuple[datetime, str]] = field(default_factory=list)
    score: ScoreFact | None = None


COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "=": lambda a, b: a == b}


@dataclass(frozen=True)
class Where:
    now: datetime
    tz: str
    scored: bool  # is there a snapshot at all

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), ZoneInfo(self.tz)).astimezone(UTC)

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.tz)).date()

    def since(self, days: int | None) -> datetime | None:
        return self.now - timedelta(days=days) if days else None


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def holds(rule: dict[str, Any], m: MemberFact, w: Where) -> bool:
    """Does member ``m`` satisfy ``rule``?"""
    result = _holds(rule, m, w)
    return not result if rule.get("negate") else result


def _purchases(m: MemberFact, since: datetime | None = None) -> list[SaleFact]:
    return [s for s in m.sales if s.status == "completed"
            and (since is None or s.occurred_at >= since)]


def _holds(rule: dict[str, Any], m: MemberFact, w: Where) -> bool:
    if "children" in rule:
        results = [holds(child, m, w) for child in rule["children"]]
        return all(results) if rule["op"] == "all" else any(results)
    f, op, value = rule["field"], rule.get("op"), rule.get("value")
    if f == "tier":
        return m.tier in value
    if f == "home_store":
        return str(m.home_store_id) in {str(v) for v in value}
    if f == "tags":
        wanted = {" ".join(v.split()) for v in value}
        return wanted <= m.tags if op == "all" else bool(wanted & m.tags)
    if f == "joined":
        if op == "within_days":
            return m.joined_at >= w.now - timedelta(days=value)
        start = w.midnight(_day(value))
        return m.joined_at < start if op == "before" else m.joined_at >= start
    if f == "birthday_month":
        months = ([w.today.month] if value == "current" else
                  [w.today.month % 12 + 1] if value == "next" else value)
        return m.birthday_calendar in (None, "solar") and m.birth_month in months
    if f in ("sms_consent", "email_consent"):
        return getattr(m, f) is (value if value is not None else True)
    if f == "gender":
        return (m.gender or "unknown") in value
    if f == "last_purchase":
        bought = _purchases(m)
        if op == "ever":
            return bool(bought)
        if op == "never":
            return not bought
        if op == "within_days":
            return bool(_purchases(m, w.since(value)))
        if op == "not_within_days":
            return not _purchases(m, w.since(value))
        start = w.midnight(_day(value))
        latest = max((s.occurred_at for s in bought), default=None)
        if latest is None:
            return False
        return latest < start if op == "before" else latest >= start
    if f == "purchase_count":
        return COMPARE[op](len(_purchases(m, w.since(rule.get("days")))), value)
    if f == "spend":
        since = w.since(rule.get("days"))
        spent = sum(s.total_minor - s.refunded_minor for s in m.sales
                    if since is None or s.occurred_at >= since)
        return COMPARE[op](spent, value)
    if f == "bought":
        since = w.since(rule.get("days"))
        wanted = {str(v) for v in value}
        index = 0 if rule["of"] == "product" else 1
        return any(str(line[index]) in wanted and line[2] > line[3]
                   for s in m.sales if since is None or s.occurred_at >= since
                   for line in s.lines)
    if f == "used_coupon":
        since = w.since(rule.get("days"))
        wanted = {str(v) for v in value or []}
        return any((not wanted or str(t) in wanted) and (since is None or at >= since)
                   for t, at in m.redemptions)
    if f == "wallet_balance":
        return COMPARE[op](m.wallet_minor or 0, value)
    if f == "points_balance":
        return COMPARE[op](m.points or 0, value)
    if f == "complaints":
        since = w.since(rule.get("days"))
        return any((op != "open" or status in ("open", "in_progress"))
                   and (since is None or at >= since) for at, status in m.complaints)
    # scores: a member without a row (or no snapshot) matches none of them
    s = m.score
    if not w.scored or s is None:
        return False
    if f == "rfm_segment":
        return s.rfm_segment in value
    if f == "lifecycle_stage":
        return s.lifecycle_stage in value
    if f == "loyalty_type":
        return s.loyalty_type in value
    if f == "p_alive":
        return s.p_alive is not None and COMPARE[op](s.p_alive, value)
    if f == "clv_minor":
        return s.clv_minor is not None and COMPARE[op](s.clv_minor, value)
    if f == "next_purchase_on":
        first = w.today - timedelta(days=rule.get("overdue_days", 0))
        last = w.today + timedelta(days=value)
        return s.next_purchase_on is not None and first <= s.next_purchase_on <= last
    raise AssertionError(f"unknown field {f}")


def matching(rule: dict[str, Any], facts: list[MemberFact], w: Where) -> set[uuid.UUID]:
    return {m.id for m in facts if m.status == "active" and holds(rule, m, w)}
