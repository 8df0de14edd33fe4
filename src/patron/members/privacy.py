"""Members' privacy rights: a copy of everything patron holds about a member, and erasure.

Design overview
---------------
*Which rows are about a member* is read from the schema, not listed by hand, so that a table
added by a later domain is covered the day it appears (the same reasoning as
``members.service.merge_members``): a row is about the member if a foreign key to
``members.id`` (or a ``member_id`` column of a snapshot table without one) holds their id, or
if it hangs, by a foreign key, off a row that is about them (a sale's lines, an account's
ledger entries, a complaint's history). ``member_links`` computes these paths once.

*Export* (``export_member``) returns the profile, balances and every such row, table by
table, as JSON-ready values; secrets (PIN and code hashes) are left out. Reading it is
recorded in the audit log, and it fulfils the member's pending export requests.

*Erasure* (``erase_member``) is irreversible and idempotent. Personal data goes: the profile
is blanked (name, phone, e-mail, birthday, preferences, tags, anniversaries), the card number
is replaced so the old card no longer finds anyone, message bodies and recipients, inbound
texts, complaint and survey free text, call notes and consent notes are blanked, and one-time
codes, referral codes and care dedupe records are deleted. Marketing consent is withdrawn
(recorded as evidence, source ``erasure``) and unsent messages are suppressed, so nothing is
sent any more. Ledgers, sales, coupons, cards and their totals are not touched: they stay
linked to the same, now anonymous, member id, so ``sum(ledger) == balance`` and every report
still add up (``patron doctor`` stays clean). What erasure does to each table is declared in
``ERASURE``; a table that is about members but not declared there fails the privacy tests,
so a new table must be classified before it ships. Merged duplicates of the member (their
``merged`` tombstones) are erased with them.

Roles: a copy of the data is for owners and for managers of the member's home store (as the
CSV export of members);
erasure is for owners only. Requests can be recorded by the member on their own page or
by any staff user for them, and are listed for managers and owners to fulfil.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, delete, false, or_, select, update
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.core.models import Base
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.members.enums import Channel, MemberStatus
from patron.members.models import Member
from patron.members.privacy_models import DataRequest, MemberErasure
from patron.wallet import service as wallet


class RequestKind(StrEnum):
    EXPORT = "export"
    ERASURE = "erasure"


class RequestStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


#: How a request was made: by the member on their page, or recorded by staff for them.
REQUEST_SOURCES = ("self_service", "staff")
#: Audit actions of a request being recorded (the self-service page has always used these).
REQUEST_ACTIONS = {RequestKind.EXPORT: "member.data_export_requested",
                   RequestKind.ERASURE: "member.erasure_requested"}
MAX_REASON = 500
MAX_LIST = 500

# ---------------------------------------------------------------- which rows are about a member

#: Foreign keys that lead to *other* people's rows, not to more of this member's data: the
#: member who referred them or the record they were merged into, and gift cards a balance was
#: moved to or from.
EXCLUDED_EDGES = frozenset({
    ("members", "referred_by_id"), ("members", "merged_into_id"),
    ("gift_cards", "transferred_from_id"), ("gift_card_entries", "counterpart_card_id"),
})
#: Tables leaving columns out of an export: secrets (hashes a member has no use for).
EXPORT_OMIT: Mapping[str, frozenset[str]] = {
    "member_otps": frozenset({"phone_hash", "client_hash", "code_hash"}),
    "gift_cards": frozenset({"pin_hash"}),
}


@dataclass(frozen=True)
class Link:
    """One way a table's row is tied to a member: ``column`` holds the member's id
    (``parent`` is None) or the key of a ``parent`` table's row about the member."""

    column: Column[Any]
    parent: str | None = None
    parent_key: Column[Any] | None = None


def _member_fk(column: Column[Any]) -> bool:
    return any(fk.column.table.name == "members" and fk.column.name == "id"
               for fk in column.foreign_keys)


@cache
def member_links() -> dict[str, tuple[Link, ...]]:
    """Every table with rows about a member (except ``members``), and how they are tied.

    A table with its own member column is tied by that column only (it is the authority);
    others through the rows they hang off, to a fixpoint. Self-references are left out: the
    rows they lead to are reached through the table's own path.
    """
    tables = [t for t in Base.metadata.sorted_tables if t.name != "members"]
    links: dict[str, list[Link]] = {}
    for table in tables:
        for column in table.columns:
            if (table.name, column.name) in EXCLUDED_EDGES:
                continue
            keyless_member = column.name == "member_id" and not column.foreign_keys
            if _member_fk(column) or keyless_member:
                links.setdefault(table.name, []).append(Link(column))
    direct = set(links)
    changed = True
    while changed:
        changed = False
        for table in tables:
            if table.name in direct:
                continue
            for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
                parent = fk.column.table.name
                if (parent == table.name or parent not in links
                        or (table.name, fk.parent.name) in EXCLUDED_EDGES):
                    continue
                if any(link.column is fk.parent for link in links.get(table.name, [])):
                    continue
                links.setdefault(table.name, []).append(Link(fk.parent, parent, fk.column))
                changed = True
    return {name: tuple(found) for name, found in links.items()}


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def about(table_name: str, member_ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """The condition selecting ``table_name``'s rows about any of ``member_ids``."""
    links = member_links().get(table_name, ())
    terms: list[ColumnElement[bool]] = []
    for link in links:
        if link.parent is None:
            terms.append(link.column.in_(list(member_ids)))
        else:
            assert link.parent_key is not None
            terms.append(link.column.in_(
                select(link.parent_key).where(about(link.parent, member_ids))))
    return or_(*terms) if terms else false()


# ---------------------------------------------------------------- erasure policy


@dataclass(frozen=True)
class Erase:
    """What erasure does to a table's rows about the member, and why.

    ``blank`` maps a column to the value it gets (a callable is called once per row, for
    columns that must stay unique); ``delete`` removes the rows; neither keeps them as
    they are (books and links that hold no personal data).
    """

    why: str
    blank: Mapping[str, object] = field(default_factory=dict)
    delete: bool = False


def _new_token() -> str:
    return secrets.token_hex(16)


ERASURE: Mapping[str, Erase] = {
    # personal data: removed or blanked
    "member_tags": Erase("describes the person", delete=True),
    "member_anniversaries": Erase("personal dates", delete=True),
    "member_otps": Erase("sign-in codes keyed by the phone", delete=True),
    "referral_codes": Erase("a code that still finds the member", delete=True),
    "care_occasions": Erase("greeting dedupe keys name personal dates", delete=True),
    "consent_events": Erase("kept as evidence; staff notes are free text", {"note": ""}),
    "messages": Erase("bodies and recipients are personal",
                      {"recipient": "", "subject": "", "body": "", "html": None, "payload": {}}),
    "message_events": Erase("provider answers may quote the recipient", {"detail": ""}),
    "inbound_messages": Erase("the sender's number and their text",
                              {"sender": "", "text": ""}),
    "complaints": Erase("free text about the person",
                        {"description": "", "contact": "", "resolution": ""}),
    "complaint_events": Erase("staff notes", {"note": ""}),
    "callback_tasks": Erase("call notes", {"notes": ""}),
    "callback_calls": Erase("call notes", {"note": ""}),
    "survey_responses": Erase("the member's comment", {"comment": ""}),
    "survey_invitations": Erase("the link's token must stop working", {"token": _new_token}),
    # the books and anonymous links: kept, tied to the now anonymous member id
    "points_accounts": Erase("ledger"), "points_lots": Erase("ledger"),
    "points_entries": Erase("ledger"), "wallet_accounts": Erase("ledger"),
    "wallet_entries": Erase("ledger"), "sales": Erase("books"), "sale_lines": Erase("books"),
    "sale_payments": Erase("books"), "sale_discounts": Erase("books"),
    "sale_promotions": Erase("books"), "refunds": Erase("books"),
    "refund_lines": Erase("books"), "coupons": Erase("issue limits and redemptions"),
    "coupon_redemptions": Erase("books"), "coupon_restorations": Erase("books"),
    "gift_cards": Erase("ledger"), "gift_card_entries": Erase("ledger"),
    "stamp_cards": Erase("ledger"), "stamp_entries": Erase("ledger"),
    "stamp_rewards": Erase("ledger"), "stamp_sales": Erase("ledger"),
    "member_packages": Erase("ledger"), "visit_entries": Erase("ledger"),
    "memberships": Erase("books"), "member_tiers": Erase("no personal data"),
    "tier_changes": Erase("no personal data"),
    "promotion_member_usage": Erase("per-member promotion limits"),
    "referral_attributions": Erase("links between member ids"),
    "referral_rewards": Erase("books"), "complaint_compensations": Erase("books"),
    "campaign_members": Erase("campaign statistics (ids and arms only)"),
    "member_merges": Erase("which ids were merged"),
    "member_scores": Erase("numbers about an anonymous id; reports keep adding up"),
    "category_cycles": Erase("numbers about an anonymous id"),
    "member_profiles": Erase("numbers stay for the portraits' totals; family inferences go",
                             {"family_signals": "", "baby_first_on": None, "baby_days": 0}),
    "data_requests": Erase("the request and its fulfilment are evidence"),
    "member_erasures": Erase("the erasure itself"),
}

#: Message states that could still be sent; erasure suppresses them.
UNSENT = ("queued", "sending", "failed")


def unclassified_tables() -> list[str]:
    """Tables about members that ``ERASURE`` does not say what to do with (must be none)."""
    return sorted(set(member_links()) - set(ERASURE))


# ---------------------------------------------------------------- export


def _plain(value: Any) -> Any:
    """A column value as JSON has it (ids and times as strings)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    return value


def _rows(session: Session, table: Table, member_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    omit = EXPORT_OMIT.get(table.name, frozenset())
    order = list(table.primary_key.columns)
    result = session.execute(select(table).where(about(table.name, member_ids)).order_by(*order))
    return [{k: _plain(v) for k, v in row.items() if k not in omit}
            for row in result.mappings()]


def _profile(member: Member) -> dict[str, Any]:
    return {
        "id": str(member.id), "card_no": member.card_no, "name": member.name,
        "phone": member.phone, "email": member.email, "gender": member.gender,
        "birthday_calendar": member.birthday_calendar, "birth_year": member.birth_year,
        "birth_month": member.birth_month, "birth_day": member.birth_day,
        "birth_leap_month": member.birth_leap_month, "preferences": member.preferences,
        "referral_source": member.referral_source, "language": member.language,
        "home_store_id": str(member.home_store_id),
        "enrolled_store_id": str(member.enrolled_store_id),
        "sms_consent": member.sms_consent, "email_consent": member.email_consent,
        "guardian_consent": member.guardian_consent, "status": member.status,
        "joined_at": member.joined_at.isoformat(), "updated_at": member.updated_at.isoformat(),
        "tags": [t.tag for t in member.tags],
        "anniversaries": [{"kind": a.kind, "label": a.label, "on": a.on.isoformat()}
                          for a in member.anniversaries],
    }


def _with_merged(session: Session, member_id: uuid.UUID) -> list[uuid.UUID]:
    """The member and every record merged into them (at any depth)."""
    found = [member_id]
    frontier = [member_id]
    while frontier:
        frontier = [i for i in session.scalars(select(Member.id).where(
            Member.merged_into_id.in_(frontier))) if i not in found]
        found += frontier
    return found


def export_member(session: Session, *, clock: Clock, principal: Principal,
                  member_id: uuid.UUID) -> dict[str, Any]:
    """Everything patron holds about the member, as JSON-ready values; audited.

    ``records`` has one list per table with rows about the member (sales and their lines,
    points and wallet ledgers, coupons, messages, complaints, callbacks, survey answers,
    consents, scores...). Fulfils the member's pending export requests.
    """
    require_role(principal, Role.MANAGER, users_only=True)
    member = members.get_member(session, member_id=member_id)
    if not principal.can_access_store(member.home_store_id):
        # as the CSV export: a manager copies out only their own stores' members
        raise PermissionDenied("This member's home store is not one of yours")
    if member.status == MemberStatus.MERGED.value:
        raise Conflict("This record was merged; export the member it was merged into",
                       "member_id", code="merged")
    ids = _with_merged(session, member.id)
    points = loyalty.balance(session, clock=clock, member_id=member.id)
    money = wallet.balance(session, member_id=member.id)
    tier = loyalty.member_tier(session, member_id=member.id)
    records = {name: _rows(session, _table(name), ids) for name in sorted(member_links())}
    erasure = session.get(MemberErasure, member.id)
    now = clock.now()
    export: dict[str, Any] = {
        "member_id": str(member.id),
        "exported_at": now.isoformat(),
        "erased_at": erasure.erased_at.isoformat() if erasure else None,
        "profile": _profile(member),
        "merged_records": [_profile(members.get_member(session, member_id=i)) for i in ids[1:]],
        "consents": [{"channel": e.channel, "granted": e.granted, "source": e.source,
                      "at": e.at.isoformat(), "note": e.note}
                     for e in members.consent_history(session, member_id=member.id)],
        "points": {"available": points.available, "pending": points.pending,
                   "debt": points.debt, "lifetime_earned": points.lifetime_earned},
        "wallet": {"principal_minor": money.principal_minor, "bonus_minor": money.bonus_minor,
                   "total_minor": money.total_minor},
        "tier": {"code": tier.code, "name": tier.name} if tier else None,
        "records": {name: rows for name, rows in records.items() if rows},
    }
    _close_pending(session, now=now, principal=principal, member_id=member.id,
                   kind=RequestKind.EXPORT, status=RequestStatus.DONE)
    audit.record(session, clock=clock, actor=principal, action="member.data_exported",
                 entity_type="member", entity_id=member.id, store_id=member.home_store_id,
                 details={"tables": sorted(export["records"]),
                          "rows": sum(len(r) for r in export["records"].values())})
    session.flush()
    return export


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True)
class ErasureResult:
    member_id: uuid.UUID
    erased_at: datetime
    erased_by_id: uuid.UUID | None
    already_erased: bool
    changed: dict[str, int]


def is_erased(session: Session, *, member_id: uuid.UUID) -> bool:
    return session.get(MemberErasure, member_id) is not None


def _erased_card_no() -> str:
    """Unique, and never a valid card number (not all digits), so no card finds it."""
    return "X" + secrets.token_hex(8)


def _apply(session: Session, table: Table, rule: Erase, member_ids: Sequence[uuid.UUID]) -> int:
    cond = about(table.name, member_ids)
    if rule.delete:
        return int(getattr(session.execute(delete(table).where(cond)), "rowcount", 0) or 0)
    if not rule.blank:
        return 0
    constant = {k: v for k, v in rule.blank.items() if not callable(v)}
    per_row = {k: v for k, v in rule.blank.items() if callable(v)}
    if not per_row:
        return int(getattr(session.execute(update(table).where(cond).values(constant)),
                           "rowcount", 0) or 0)
    key = list(table.primary_key.columns)
    rows = session.execute(select(*key).where(cond)).all()
    for row in rows:
        values = constant | {k: fn() for k, fn in per_row.items()}
        session.execute(update(table).where(*(c == v for c, v in zip(key, row, strict=True)))
                        .values(values))
    return len(rows)


def _blank_member(member: Member, *, now: datetime) -> None:
    member.card_no = _erased_card_no()
    member.phone = member.phone_last4 = member.email = member.gender = None
    member.name = ""
    member.birthday_calendar = None
    member.birth_year = member.birth_month = member.birth_day = None
    member.birth_leap_month = False
    member.preferences = ""
    member.referral_source = member.language = None
    member.guardian_consent = False
    if member.status == MemberStatus.ACTIVE.value:
        member.status = MemberStatus.DELETED.value
    member.deleted_at = member.deleted_at or now
    member.updated_at = now


def erase_member(session: Session, *, clock: Clock, principal: Principal,
                 member_id: uuid.UUID, reason: str,
                 request_id: uuid.UUID | None = None) -> ErasureResult:
    """Erase the member's personal data for good; ledgers and sales stay, anonymised.

    Owners only. A second call for the same member changes nothing and says so.
    """
    require_role(principal, Role.OWNER, users_only=True)
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("Say why the member is erased (e.g. their request)", "reason",
                               code="required")
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"reason must be at most {MAX_REASON} characters", "reason")
    member = members.get_member(session, member_id=member_id)
    done = session.get(MemberErasure, member.id)
    if done is not None:
        return ErasureResult(member.id, done.erased_at, done.erased_by_id, True, {})
    if member.status == MemberStatus.MERGED.value:
        raise Conflict("This record was merged; erase the member it was merged into",
                       "member_id", code="merged")
    if request_id is not None:
        request = session.get(DataRequest, request_id)
        if request is None or request.member_id != member.id \
                or request.kind != RequestKind.ERASURE.value:
            raise ValidationFailed("No erasure request of this member has this id",
                                   "request_id")
    now = clock.now()
    ids = _with_merged(session, member.id)
    for mid in ids:
        for channel in Channel:
            if getattr(members.get_member(session, member_id=mid), f"{channel.value}_consent"):
                members.change_consent(session, clock=clock, actor=principal, member_id=mid,
                                       channel=channel, granted=False, source="erasure")
    session.flush()
    messages = _table("messages")
    changed: dict[str, int] = {}
    suppressed = session.execute(
        update(messages).where(messages.c.member_id.in_(ids), messages.c.status.in_(UNSENT))
        .values(status="suppressed", reason="erased", updated_at=now))
    changed["messages.suppressed"] = int(getattr(suppressed, "rowcount", 0) or 0)
    for name in sorted(member_links(), key=lambda n: -_depth(n)):
        rule = ERASURE.get(name)
        if rule is None:  # pragma: no cover - the privacy tests keep this from shipping
            raise Conflict(f"Erasure does not know what to do with table {name!r}", None,
                           code="unclassified_table")
        count = _apply(session, _table(name), rule, ids)
        if count:
            changed[name] = count
    session.expire_all()
    for mid in ids:
        _blank_member(members.get_member(session, member_id=mid), now=now)
    session.add(MemberErasure(member_id=member.id, erased_at=now,
                              erased_by_id=principal.user_id, request_id=request_id))
    session.flush()
    _close_pending(session, now=now, principal=principal, member_id=member.id,
                   kind=RequestKind.ERASURE, status=RequestStatus.DONE)
    _close_pending(session, now=now, principal=principal, member_id=member.id,
                   kind=RequestKind.EXPORT, status=RequestStatus.CANCELLED)
    audit.record(session, clock=clock, actor=principal, action="member.erased",
                 entity_type="member", entity_id=member.id, store_id=member.home_store_id,
                 details={"reason": reason, "request_id": str(request_id) if request_id else None,
                          "merged_records": [str(i) for i in ids[1:]], "changed": changed})
    session.flush()
    return ErasureResult(member.id, now, principal.user_id, False, changed)


def _depth(name: str) -> int:
    """How far a table hangs below the member (children are blanked/deleted first)."""
    links = member_links().get(name, ())
    return max((1 + _depth(link.parent) if link.parent else 0) for link in links) \
        if links else 0


# ---------------------------------------------------------------- requests


def _close_pending(session: Session, *, now: datetime, principal: Principal,
                   member_id: uuid.UUID, kind: RequestKind, status: RequestStatus) -> None:
    session.execute(
        update(DataRequest).where(DataRequest.member_id == member_id,
                                  DataRequest.kind == kind.value,
                                  DataRequest.status == RequestStatus.PENDING.value)
        .values(status=status.value, handled_at=now, handled_by_id=principal.user_id)
        .execution_options(synchronize_session="fetch"))


def request_data(session: Session, *, clock: Clock, actor: Principal | None,
                 member_id: uuid.UUID, kind: RequestKind, source: str,
                 details: Mapping[str, Any] | None = None) -> DataRequest:
    """Record a member's request for a copy or an erasure of their data.

    ``actor`` None is the member on their own page; staff record requests made in person
    or by phone. A pending request of the same kind is returned rather than repeated.
    """
    if actor is not None:
        require_role(actor, Role.CASHIER, users_only=True)
    if source not in REQUEST_SOURCES:
        raise ValidationFailed(f"source must be one of {', '.join(REQUEST_SOURCES)}", "source")
    member = members.get_member(session, member_id=member_id)
    if member.status == MemberStatus.MERGED.value or is_erased(session, member_id=member.id):
        raise Conflict("This member's data can no longer be requested", "member_id",
                       code="not_active")
    pending = session.scalar(select(DataRequest).where(
        DataRequest.member_id == member.id, DataRequest.kind == kind.value,
        DataRequest.status == RequestStatus.PENDING.value))
    if pending is not None:
        return pending
    request = DataRequest(member_id=member.id, kind=kind.value,
                          status=RequestStatus.PENDING.value, source=source,
                          requested_at=clock.now(),
                          requested_by_id=actor.user_id if actor else None)
    session.add(request)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action=REQUEST_ACTIONS[kind],
                 entity_type="member", entity_id=member.id, store_id=member.home_store_id,
                 details={"request_id": str(request.id), "via": source, **(details or {})})
    return request


def recent_requests(session: Session, *, member_id: uuid.UUID, since: datetime
                    ) -> dict[str, datetime]:
    """The member's requests still pending or made since ``since``: when each kind was made."""
    rows = session.scalars(select(DataRequest).where(
        DataRequest.member_id == member_id,
        or_(DataRequest.status == RequestStatus.PENDING.value,
            DataRequest.requested_at > since)).order_by(DataRequest.requested_at))
    return {row.kind: row.requested_at for row in rows}


def list_requests(session: Session, *, actor: Principal, status: RequestStatus | None = None,
                  kind: RequestKind | None = None, member_id: uuid.UUID | None = None,
                  limit: int = 100) -> list[DataRequest]:
    """Requests to fulfil, oldest first; a manager sees those of their stores' members."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    stmt = select(DataRequest).order_by(DataRequest.requested_at, DataRequest.id).limit(limit)
    visible = actor.visible_store_ids()
    if visible is not None:
        stmt = stmt.join(Member, Member.id == DataRequest.member_id).where(
            Member.home_store_id.in_(visible))
    if status is not None:
        stmt = stmt.where(DataRequest.status == status.value)
    if kind is not None:
        stmt = stmt.where(DataRequest.kind == kind.value)
    if member_id is not None:
        stmt = stmt.where(DataRequest.member_id == member_id)
    return list(session.scalars(stmt))


def cancel_request(session: Session, *, clock: Clock, actor: Principal,
                   request_id: uuid.UUID) -> DataRequest:
    """Close a pending request without fulfilling it (withdrawn, or made by mistake)."""
    require_role(actor, Role.MANAGER, users_only=True)
    request = session.get(DataRequest, request_id)
    if request is None:
        raise NotFound("No such data request", "request_id")
    member = members.get_member(session, member_id=request.member_id)
    if not actor.can_access_store(member.home_store_id):
        raise PermissionDenied("This member's home store is not one of yours")
    if request.status != RequestStatus.PENDING.value:
        raise Conflict("Only a pending request can be cancelled", "request_id",
                       code="not_pending")
    request.status = RequestStatus.CANCELLED.value
    request.handled_at = clock.now()
    request.handled_by_id = actor.user_id
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="member.data_request_cancelled",
                 entity_type="member", entity_id=member.id, store_id=member.home_store_id,
                 details={"request_id": str(request.id), "kind": request.kind})
    return request

