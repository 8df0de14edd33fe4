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
recorded in the audit log, and it fulfils the member's pending export requests. The same
content comes as a zip of CSV files for a spreadsheet (``begin_zip_export`` checks, counts
and audits; ``zip_export`` streams the zip as the rows are read, in batches). An erased
member's export holds what erasure kept: it reads the same, blanked, rows.

*Erasure* (``erase_member``) is irreversible and idempotent. Personal data goes: the profile
is blanked (name, phone, e-mail, birthday, preferences, tags, anniversaries), the card number
is replaced so the old card no longer finds anyone, message bodies and recipients, inbound
texts, complaint and survey free text, call notes, staff notes and consent notes are
blanked, and one-time codes, referral codes and care dedupe records are deleted. Marketing
consent is withdrawn (recorded as evidence, source ``erasure``) and unsent messages are
suppressed, so nothing is sent any more. Ledgers, sales, coupons, cards and their totals
are not touched: they stay linked to the same, now anonymous, member id, so
``sum(ledger) == balance`` and every report still add up (``patron doctor`` stays clean).
What erasure does to each table is declared in ``ERASURE``; a table that is about members
but not declared there fails the privacy tests, so a new table must be classified before it
ships. Merged duplicates of the member (their
``merged`` tombstones) are erased with them.

Roles: a copy of the data is for owners and for managers of the member's home store (as the
CSV export of members);
erasure is for owners only. Requests can be recorded by the member on their own page or
by any staff user for them, and are listed for managers and owners to fulfil.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, delete, false, func, or_, select, update
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.core.models import Base
from patron.core.money import format_minor
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
    "member_notes": Erase("staff notes are free text about the person; who wrote one and "
                          "when stay", {"body": ""}),
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
    "points_transfers": Erase("ledger; the note is free text", {"note": ""}),
    "next_best_products": Erase("recommendations profile the person", delete=True),
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


def _exportable(session: Session, principal: Principal, member_id: uuid.UUID) -> Member:
    """The member, if ``principal`` may have a copy of their data."""
    require_role(principal, Role.MANAGER, users_only=True)
    member = members.get_member(session, member_id=member_id)
    if not principal.can_access_store(member.home_store_id):
        # as the CSV export: a manager copies out only their own stores' members
        raise PermissionDenied("This member's home store is not one of yours")
    if member.status == MemberStatus.MERGED.value:
        raise Conflict("This record was merged; export the member it was merged into",
                       "member_id", code="merged")
    return member


def _summary(session: Session, *, clock: Clock, member: Member, ids: Sequence[uuid.UUID],
             now: datetime) -> dict[str, Any]:
    """The export's parts other than the per-table records: profile, consents, balances."""
    points = loyalty.balance(session, clock=clock, member_id=member.id)
    money = wallet.balance(session, member_id=member.id)
    tier = loyalty.member_tier(session, member_id=member.id)
    erasure = session.get(MemberErasure, member.id)
    return {
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
    }


def _exported(session: Session, *, clock: Clock, principal: Principal, member: Member,
              now: datetime, export_format: str, tables: Mapping[str, int]) -> None:
    """Close the member's pending export requests and record the copy in the audit log."""
    _close_pending(session, now=now, principal=principal, member_id=member.id,
                   kind=RequestKind.EXPORT, status=RequestStatus.DONE)
    audit.record(session, clock=clock, actor=principal, action="member.data_exported",
                 entity_type="member", entity_id=member.id, store_id=member.home_store_id,
                 details={"tables": sorted(tables), "rows": sum(tables.values()),
                          "format": export_format})
    session.flush()


def export_member(session: Session, *, clock: Clock, principal: Principal,
                  member_id: uuid.UUID) -> dict[str, Any]:
    """Everything patron holds about the member, as JSON-ready values; audited.

    ``records`` has one list per table with rows about the member (sales and their lines,
    points and wallet ledgers, coupons, messages, complaints, callbacks, survey answers,
    consents, scores, staff notes...). Fulfils the member's pending export requests.
    """
    member = _exportable(session, principal, member_id)
    ids = _with_merged(session, member.id)
    now = clock.now()
    export = _summary(session, clock=clock, member=member, ids=ids, now=now)
    records = {name: _rows(session, _table(name), ids) for name in sorted(member_links())}
    export["records"] = {name: rows for name, rows in records.items() if rows}
    _exported(session, clock=clock, principal=principal, member=member, now=now,
              export_format="json",
              tables={name: len(rows) for name, rows in export["records"].items()})
    return export


# ---------------------------------------------------------------- export as a zip of CSV files
#
# The same content as the JSON export, one CSV file per part, for people who open it in a
# spreadsheet: UTF-8 with a byte-order mark (Excel then reads Chinese correctly), a header
# row, and next to every amount in minor units (``*_minor``) the amount formatted in the
# deployment's currency. The records are read in batches and the zip is produced as it is
# read, so a long history never sits in memory whole.

ZIP_BATCH = 1000
#: Cells as the CSV files write them: empty for None, true/false, JSON for lists and maps.
TRUE, FALSE = "true", "false"


def csv_cell(value: Any) -> str:
    """One value as the CSV files write it (the JSON export's value, as text)."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _is_money(name: str) -> bool:
    return name.endswith("_minor")


def _header_and_cells(columns: Sequence[str], currency: str
                      ) -> tuple[list[str], Callable[[Mapping[Any, Any]], list[str]]]:
    """The header (a ``*_formatted`` column after each ``*_minor`` one) and a row maker."""
    header: list[str] = []
    for name in columns:
        header.append(name)
        if _is_money(name):
            header.append(name.removesuffix("_minor") + "_formatted")

    def cells(row: Mapping[Any, Any]) -> list[str]:
        out: list[str] = []
        for name in columns:
            value = row.get(name)
            out.append(csv_cell(value))
            if _is_money(name):
                out.append(format_minor(value, currency) if isinstance(value, int) else "")
        return out

    return header, cells


class _Sink(io.RawIOBase):
    """An unseekable stream the zip is written to; ``drain`` hands over what it holds."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


@dataclass(frozen=True)
class ZipExport:
    """What a zip export will hold, decided (and audited) before the first byte is sent."""

    member_id: uuid.UUID
    member_ids: tuple[uuid.UUID, ...]
    summary: dict[str, Any]
    tables: dict[str, int]  # rows per table about the member (non-empty ones only)
    filename: str


def begin_zip_export(session: Session, *, clock: Clock, principal: Principal,
                     member_id: uuid.UUID) -> ZipExport:
    """Check the caller may have a copy, count what it will hold and audit it.

    The caller commits (the audit entry is durable before any data leaves), then streams
    :func:`zip_export` from a session of its own.
    """
    member = _exportable(session, principal, member_id)
    ids = _with_merged(session, member.id)
    now = clock.now()
    summary = _summary(session, clock=clock, member=member, ids=ids, now=now)
    tables: dict[str, int] = {}
    for name in sorted(member_links()):
        count = session.scalar(select(func.count()).select_from(_table(name))
                               .where(about(name, ids))) or 0
        if count:
            tables[name] = int(count)
    _exported(session, clock=clock, principal=principal, member=member, now=now,
              export_format="zip", tables=tables)
    return ZipExport(member_id=member.id, member_ids=tuple(ids), summary=summary,
                     tables=tables,
                     filename=f"patron-member-{member.id}-{now:%Y%m%d}.zip")


def _summary_rows(export: ZipExport) -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
    """The CSV files of the export's summary parts: (columns, rows) by file name."""
    s = export.summary
    profile_columns = ["record", *s["profile"]]
    profiles = [{"record": "member", **s["profile"]},
                *({"record": "merged", **p} for p in s["merged_records"])]
    account = {"member_id": s["member_id"], "exported_at": s["exported_at"],
               "erased_at": s["erased_at"],
               **{f"points_{k}": v for k, v in s["points"].items()},
               **{f"wallet_{k}": v for k, v in s["wallet"].items()},
               "tier_code": s["tier"]["code"] if s["tier"] else None,
               "tier_name": s["tier"]["name"] if s["tier"] else None}
    return {
        "profile.csv": (profile_columns, profiles),
        "account.csv": (list(account), [account]),
        "consents.csv": (["channel", "granted", "source", "at", "note"], s["consents"]),
    }


def _table_columns(name: str) -> list[str]:
    omit = EXPORT_OMIT.get(name, frozenset())
    return [c.name for c in _table(name).columns if c.name not in omit]


ZIP_PARTS = {
    "profile.csv": "the member's profile; a row per record merged into them follows",
    "account.csv": "points and stored-value balances and the tier when exported",
    "consents.csv": "every grant and withdrawal of marketing consent",
}


def _readme(export: ZipExport, summary: Mapping[str, tuple[list[str], list[Any]]],
            currency: str) -> str:
    lines = [
        "A copy of the data patron holds about member " + str(export.member_id) + ",",
        "exported at " + str(export.summary["exported_at"]) + ".",
        "",
        "Each .csv file is UTF-8 with a byte-order mark, one header row, comma-separated.",
        "Empty cell: no value. true/false: yes/no. Times are UTC (ISO 8601).",
        "Amounts: *_minor columns count the currency's smallest unit (fen, cents); the",
        f"*_formatted column beside each is the same amount in {currency}.",
        "Lists and maps are written as JSON.",
        "",
    ]
    for name, (columns, _rows) in summary.items():
        header, _ = _header_and_cells(columns, currency)
        lines += [f"{name}: {ZIP_PARTS[name]}", "  columns: " + ", ".join(header), ""]
    for table, count in export.tables.items():
        header, _ = _header_and_cells(_table_columns(table), currency)
        lines += [f"records/{table}.csv: {count} row(s) of table {table}",
                  "  columns: " + ", ".join(header), ""]
    return "\n".join(lines)


def zip_export(session: Session, *, export: ZipExport, currency: str,
               batch: int = ZIP_BATCH) -> Iterator[bytes]:
    """The zip file's bytes, produced as the records are read (``batch`` rows at a time).

    ``README.txt`` names every file and column; ``profile.csv``, ``account.csv`` and
    ``consents.csv`` hold the JSON export's summary parts, and ``records/<table>.csv`` one
    file per table with rows about the member (the JSON export's ``records``).
    """
    sink = _Sink()
    summary = _summary_rows(export)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", _readme(export, summary, currency).encode("utf-8-sig"))
        for name, (columns, rows) in summary.items():
            header, cells = _header_and_cells(columns, currency)
            _write_csv(zf, name, header, (cells(r) for r in rows))
            yield sink.drain()
        for table_name in export.tables:
            table = _table(table_name)
            header, cells = _header_and_cells(_table_columns(table_name), currency)
            result = session.execute(
                select(table).where(about(table_name, export.member_ids))
                .order_by(*table.primary_key.columns)
                .execution_options(yield_per=batch))
            with zf.open(f"records/{table_name}.csv", "w") as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                writer = csv.writer(text)
                writer.writerow(header)
                for part in result.mappings().partitions():
                    writer.writerows(cells(r) for r in part)
                    text.flush()
                    yield sink.drain()
                text.detach()
            yield sink.drain()
    yield sink.drain()


def _write_csv(zf: zipfile.ZipFile, name: str, header: list[str],
               rows: Iterable[list[str]]) -> None:
    with zf.open(name, "w") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()


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

