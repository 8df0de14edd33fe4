"""Use cases of the members domain: stores, enrolment, edits, consents, search and merge.

Services take a session and keyword arguments, flush but never commit: the request, CLI
command or job that calls them owns the transaction.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, ValidationFailed
from patron.core.events import emit
from patron.core.ids import new_id
from patron.core.models import Base
from patron.members import rules
from patron.members.enums import Calendar, Channel, Gender, MemberStatus
from patron.members.models import Anniversary, ConsentEvent, Member, MemberMerge, MemberTag, Store
from patron.members.schemas import (
    AnniversaryRead,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    StoreCreate,
    StoreUpdate,
)

# ---------------------------------------------------------------- stores


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(f"Unknown time zone {name!r}", "timezone") from exc


def create_store(session: Session, *, clock: Clock, actor: Principal | None,
                 data: StoreCreate) -> Store:
    if actor is not None:
        require_role(actor, Role.OWNER, users_only=True)
    _check_timezone(data.timezone)
    if session.scalar(select(Store.id).where(Store.code == data.code)) is not None:
        raise Conflict(f"Store code {data.code!r} is taken", "code", code="store_code_taken")
    store = Store(code=data.code, name=data.name, address=data.address, timezone=data.timezone,
                  phone=data.phone, created_at=clock.now())
    session.add(store)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="store.created", entity_type="store",
                 entity_id=store.id, store_id=store.id, details={"code": store.code})
    return store


def update_store(session: Session, *, clock: Clock, actor: Principal, store_id: uuid.UUID,
                 data: StoreUpdate) -> Store:
    require_role(actor, Role.MANAGER, users_only=True)
    require_store(actor, store_id)
    store = get_store(session, store_id=store_id)
    changes = data.model_dump(exclude_unset=True)
    if "timezone" in changes and changes["timezone"] is not None:
        _check_timezone(changes["timezone"])
    if "active" in changes:
        require_role(actor, Role.OWNER)
    for key, value in changes.items():
        if value is None and key in ("name", "timezone", "active"):
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")
        setattr(store, key, value if value is not None or key == "phone" else "")
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="store.updated", entity_type="store",
                 entity_id=store.id, store_id=store.id, details={"fields": sorted(changes)})
    return store


def get_store(session: Session, *, store_id: uuid.UUID) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound("No such store", "store_id")
    return store


def list_stores(session: Session, *, include_inactive: bool = False) -> list[Store]:
    """Every store of the brand: members are shared, so every role may see the list."""
    stmt = select(Store).order_by(Store.code)
    if not include_inactive:
        stmt = stmt.where(Store.active.is_(True))
    return list(session.scalars(stmt))


# ---------------------------------------------------------------- members: reads


def to_read(member: Member, viewer: Principal) -> MemberRead:
    """The member as ``viewer`` may see them: cashiers and POS keys get a masked phone."""
    full = viewer.sees_full_phone
    return MemberRead(
        id=member.id, card_no=member.card_no, name=member.name,
        phone=member.phone if full else rules.mask_phone(member.phone), phone_masked=not full,
        email=member.email, gender=Gender(member.gender) if member.gender else None,
        birthday_calendar=Calendar(member.birthday_calendar) if member.birthday_calendar else None,
        birth_year=member.birth_year, birth_month=member.birth_month, birth_day=member.birth_day,
        birth_leap_month=member.birth_leap_month,
        anniversaries=[AnniversaryRead.model_validate(a) for a in member.anniversaries],
        tags=[t.tag for t in member.tags], preferences=member.preferences,
        home_store_id=member.home_store_id, enrolled_store_id=member.enrolled_store_id,
        enrolled_by_id=member.enrolled_by_id, referral_source=member.referral_source,
        referred_by_id=member.referred_by_id, sms_consent=member.sms_consent,
        email_consent=member.email_consent, status=member.status,
        merged_into_id=member.merged_into_id, joined_at=member.joined_at,
        updated_at=member.updated_at,
    )


def get_member(session: Session, *, member_id: uuid.UUID) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("No such member", "member_id")
    return member


def find_by_card(session: Session, *, card_no: str) -> Member | None:
    """The live member holding this card; a merged record's card leads to the survivor."""
    member = session.scalar(select(Member).where(Member.card_no == card_no.strip()))
    hops = 0
    while member is not None and member.merged_into_id is not None and hops < 10:
        member = session.get(Member, member.merged_into_id)
        hops += 1
    return member


def find_by_phone(session: Session, *, phone_e164: str) -> Member | None:
    return session.scalar(select(Member).where(
        Member.phone == phone_e164, Member.status == MemberStatus.ACTIVE.value))


@dataclass(frozen=True)
class MemberQuery:
    q: str | None = None
    home_store_id: uuid.UUID | None = None
    tag: str | None = None
    status: MemberStatus = MemberStatus.ACTIVE
    page: int = 1
    page_size: int = 25


def search_members(
    session: Session, *, query: MemberQuery, region: str
) -> tuple[list[Member], int]:
    """Find members the way a cashier types: full phone, last 4 digits, card number or name.

    Each form uses an index: phone (unique), phone_last4, card_no (unique), and a name
    prefix range (``name >= q AND name < q + U+FFFF``), so lookups stay fast at millions.
    """
    if query.page < 1:
        raise ValidationFailed("page starts at 1", "page")
    if not 1 <= query.page_size <= 200:
        raise ValidationFailed("page_size must be between 1 and 200", "page_size")
    stmt = select(Member).where(Member.status == query.status.value)
    q = (query.q or "").strip()
    if q:
        digits = q.replace(" ", "").replace("-", "")
        if digits.isdigit() and len(digits) == 4:
            stmt = stmt.where(Member.phone_last4 == digits)
        elif digits.lstrip("+").isdigit() and len(digits.lstrip("+")) >= 7:
            conds = []
            if rules.is_valid_card_no(digits):
                conds.append(Member.card_no == digits)
            with contextlib.suppress(ValidationFailed):
                # the status term lets SQLite use the partial unique index on phone
                conds.append(and_(Member.phone == rules.normalise_phone(digits, region),
                                  Member.status == query.status.value))
            if not conds:
                return [], 0
            stmt = stmt.where(or_(*conds))
        else:
            stmt = stmt.where(Member.name >= q, Member.name < q + "\uffff")
    if query.home_store_id is not None:
        stmt = stmt.where(Member.home_store_id == query.home_store_id)
    if query.tag:
        stmt = stmt.where(exists().where(MemberTag.member_id == Member.id,
                                         MemberTag.tag == query.tag))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.options(selectinload(Member.tags), selectinload(Member.anniversaries))
        .order_by(Member.joined_at.desc(), Member.id)
        .offset((query.page - 1) * query.page_size).limit(query.page_size)
    )
    return list(rows), total


# ---------------------------------------------------------------- members: writes


def _unique_card_no(session: Session) -> str:
    for _ in range(20):
        card = rules.new_card_no()
        if session.scalar(select(Member.id).where(Member.card_no == card)) is None:
            return card
    raise Conflict("Could not allocate a card number", "card_no")  # pragma: no cover


def _record_consent(session: Session, *, clock: Clock, member: Member, channel: Channel,
                    granted: bool, source: str, actor: Principal | None,
                    store_id: uuid.UUID | None, note: str = "") -> None:
    session.add(ConsentEvent(
        id=new_id(), member_id=member.id, channel=channel.value, granted=granted, source=source,
        at=clock.now(), by_user_id=actor.user_id if actor else None, store_id=store_id, note=note,
    ))
    setattr(member, f"{channel.value}_consent", granted)


def _actor_store(actor: Principal | None, requested: uuid.UUID | None) -> uuid.UUID | None:
    if requested is not None:
        return requested
    return actor.default_store_id if actor else None


def enroll_member(session: Session, *, clock: Clock, actor: Principal | None, region: str,
                  data: MemberCreate, source: str = "enrolment") -> Member:
    """Sign up a member for the whole brand; emits ``member.joined`` in the same transaction."""
    phone = rules.normalise_phone(data.phone, region)
    birthday = rules.validate_birthday(data.birthday_calendar, data.birth_year, data.birth_month,
                                       data.birth_day, data.birth_leap_month)
    tags = sorted({rules.normalise_tag(t) for t in data.tags})
    home_store_id = _actor_store(actor, data.home_store_id)
    if home_store_id is None:
        raise ValidationFailed("Choose the member's home store", "home_store_id", code="required")
    if session.get(Store, home_store_id) is None:
        raise ValidationFailed("Unknown store", "home_store_id", code="unknown_store")
    enrolled_store_id = actor.default_store_id if actor and actor.store_ids else home_store_id
    if find_by_phone(session, phone_e164=phone) is not None:
        raise Conflict("A member with this phone number already exists", "phone",
                       code="duplicate_phone")
    referred_by = None
    if data.referred_by_card_no:
        referrer = find_by_card(session, card_no=data.referred_by_card_no)
        if referrer is None:
            raise ValidationFailed("No member has this card number", "referred_by_card_no")
        referred_by = referrer.id
    now = clock.now()
    member = Member(
        id=new_id(), card_no=_unique_card_no(session), phone=phone, phone_last4=rules.last4(phone),
        name=data.name, email=str(data.email) if data.email else None,
        gender=data.gender.value if data.gender else None,
        birthday_calendar=birthday.calendar.value if birthday else None,
        birth_year=birthday.year if birthday else None,
        birth_month=birthday.month if birthday else None,
        birth_day=birthday.day if birthday else None,
        birth_leap_month=birthday.leap_month if birthday else False,
        preferences=data.preferences, referral_source=data.referral_source,
        referred_by_id=referred_by, home_store_id=home_store_id,
        enrolled_store_id=enrolled_store_id, enrolled_by_id=actor.user_id if actor else None,
        status=MemberStatus.ACTIVE.value, joined_at=now, updated_at=now,
        tags=[MemberTag(tag=t) for t in tags],
        anniversaries=[Anniversary(kind=a.kind.value, label=a.label, on=a.on)
                       for a in data.anniversaries],
    )
    session.add(member)
    try:
        session.flush()
    except IntegrityError as exc:
        if "phone" not in str(exc.orig):
            raise
        # a concurrent enrolment won the race for this phone
        raise Conflict("A member with this phone number already exists", "phone",
                       code="duplicate_phone") from exc
    for channel, granted in ((Channel.SMS, data.sms_consent), (Channel.EMAIL, data.email_consent)):
        if granted:
            _record_consent(session, clock=clock, member=member, channel=channel, granted=True,
                            source=source, actor=actor, store_id=enrolled_store_id)
    session.flush()
    emit(session, clock=clock, type="member.joined", subject_id=member.id,
         store_id=enrolled_store_id, payload={"member_id": str(member.id),
                                              "store_id": str(enrolled_store_id)})
    audit.record(session, clock=clock, actor=actor, action="member.created",
                 entity_type="member", entity_id=member.id, store_id=enrolled_store_id)
    return member


def update_member(session: Session, *, clock: Clock, actor: Principal, region: str,
                  member_id: uuid.UUID, data: MemberUpdate) -> Member:
    """Change what was sent; the audit entry lists the fields that changed."""
    member = get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise Conflict("Only active members can be edited", "member_id", code="not_active")
    changes = data.model_dump(exclude_unset=True)
    changed: list[str] = []
    if "name" in changes:
        if changes["name"] is None:
            raise ValidationFailed("Name is required", "name", code="required")
        member.name = changes["name"]
    if "phone" in changes:
        if changes["phone"] is None:
            raise ValidationFailed("Phone number is required", "phone", code="required")
        phone = rules.normalise_phone(changes["phone"], region)
        if phone != member.phone:
            other = find_by_phone(session, phone_e164=phone)
            if other is not None and other.id != member.id:
                raise Conflict("Another member has this phone number", "phone",
                               code="duplicate_phone")
            member.phone, member.phone_last4 = phone, rules.last4(phone)
    if "email" in changes:
        member.email = str(changes["email"]) if changes["email"] else None
    if "gender" in changes:
        member.gender = changes["gender"].value if changes["gender"] else None
    birthday_keys = {"birthday_calendar", "birth_year", "birth_month", "birth_day",
                     "birth_leap_month"}
    if birthday_keys & changes.keys():
        birthday = rules.validate_birthday(
            changes.get("birthday_calendar", member.birthday_calendar),
            changes.get("birth_year", member.birth_year),
            changes.get("birth_month", member.birth_month),
            changes.get("birth_day", member.birth_day),
            bool(changes.get("birth_leap_month", member.birth_leap_month)),
        )
        member.birthday_calendar = birthday.calendar.value if birthday else None
        member.birth_year = birthday.year if birthday else None
        member.birth_month = birthday.month if birthday else None
        member.birth_day = birthday.day if birthday else None
        member.birth_leap_month = birthday.leap_month if birthday else False
    if "tags" in changes and changes["tags"] is not None:
        wanted = {rules.normalise_tag(t) for t in changes["tags"]}
        member.tags = [t for t in member.tags if t.tag in wanted] + [
            MemberTag(tag=t) for t in sorted(wanted - {t.tag for t in member.tags})]
    if "anniversaries" in changes and data.anniversaries is not None:
        member.anniversaries = [Anniversary(kind=a.kind.value, label=a.label, on=a.on)
                                for a in data.anniversaries]
    if "preferences" in changes:
        member.preferences = changes["preferences"] or ""
    if "referral_source" in changes:
        member.referral_source = changes["referral_source"]
    if "home_store_id" in changes:
        if changes["home_store_id"] is None or session.get(Store, changes["home_store_id"]) is None:
            raise ValidationFailed("Unknown store", "home_store_id", code="unknown_store")
        member.home_store_id = changes["home_store_id"]
    changed = sorted(changes)
    member.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="member.updated",
                 entity_type="member", entity_id=member.id, details={"fields": changed})
    return member


def change_consent(session: Session, *, clock: Clock, actor: Principal | None,
                   member_id: uuid.UUID, channel: Channel, granted: bool, source: str,
                   note: str = "") -> Member:
    """Grant or withdraw marketing consent for one channel; every change is kept as evidence."""
    member = get_member(session, member_id=member_id)
    if getattr(member, f"{channel.value}_consent") != granted:
        _record_consent(session, clock=clock, member=member, channel=channel, granted=granted,
                        source=source, actor=actor,
                        store_id=actor.default_store_id if actor else None, note=note)
        member.updated_at = clock.now()
        emit(session, clock=clock, type="member.consent_changed", subject_id=member.id,
             payload={"member_id": str(member.id), "channel": channel.value,
                      "granted": granted, "source": source})
    session.flush()
    return member


def consent_history(session: Session, *, member_id: uuid.UUID) -> list[ConsentEvent]:
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.member_id == member_id)
                                .order_by(ConsentEvent.seq)))


def delete_member(session: Session, *, clock: Clock, actor: Principal,
                  member_id: uuid.UUID) -> Member:
    """Soft-delete: hidden from lists and lookups, history intact. Not erasure."""
    require_role(actor, Role.MANAGER, users_only=True)
    member = get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise Conflict("Member is not active", "member_id", code="not_active")
    member.status = MemberStatus.DELETED.value
    member.deleted_at = member.updated_at = clock.now()
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="member.deleted",
                 entity_type="member", entity_id=member.id)
    return member


# ---------------------------------------------------------------- merge

MergeHook = Callable[[Session, Clock, uuid.UUID, uuid.UUID], int]
#: Tables whose rows cannot simply be re-pointed at the survivor (e.g. one account per
#: member) register a hook here, keyed by table name; it folds the duplicate's rows into the
#: survivor's and returns how many it moved. Every other table with a foreign key to
#: ``members.id`` is re-pointed generically, so history added by later domains is kept too.
MERGE_HOOKS: dict[str, MergeHook] = {}
_NOT_MOVED = {"members", "member_merges"}


def _merge_tags(session: Session, _clock: Clock, survivor_id: uuid.UUID,
                duplicate_id: uuid.UUID) -> int:
    have = set(session.scalars(select(MemberTag.tag).where(MemberTag.member_id == survivor_id)))
    theirs = set(session.scalars(select(MemberTag.tag).where(MemberTag.member_id == duplicate_id)))
    session.execute(delete(MemberTag).where(MemberTag.member_id == duplicate_id))
    new = sorted(theirs - have)
    if new:
        session.execute(insert(MemberTag), [{"member_id": survivor_id, "tag": t} for t in new])
    return len(new)


MERGE_HOOKS["member_tags"] = _merge_tags


def merge_members(session: Session, *, clock: Clock, actor: Principal,
                  survivor_id: uuid.UUID, duplicate_id: uuid.UUID) -> tuple[Member, dict[str, int]]:
    """Fold a duplicate record into a survivor; all history ends up on the survivor.

    Empty profile fields of the survivor are filled from the duplicate; consents are not
    widened (the survivor keeps its own choices, the duplicate's evidence moves over). The
    duplicate stays as a ``merged`` tombstone pointing at the survivor, so its card still
    finds the right person.
    """
    require_role(actor, Role.MANAGER, users_only=True)
    if survivor_id == duplicate_id:
        raise ValidationFailed("A member cannot be merged into itself", "duplicate_id")
    survivor = get_member(session, member_id=survivor_id)
    duplicate = get_member(session, member_id=duplicate_id)
    for m, field_name in ((survivor, "member_id"), (duplicate, "duplicate_id")):
        if m.status != MemberStatus.ACTIVE.value:
            raise Conflict("Only active members can be merged", field_name, code="not_active")
    moved: dict[str, int] = {}
    session.flush()
    for table in Base.metadata.sorted_tables:
        if table.name in _NOT_MOVED:
            continue
        if table.name in MERGE_HOOKS:
            moved[table.name] = MERGE_HOOKS[table.name](session, clock, survivor_id,
                                                         duplicate_id)
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == "members" and fk.column.name == "id":
                col = fk.parent
                result = session.execute(update(table).where(col == duplicate_id)
                                         .values({col.name: survivor_id}))
                count = int(getattr(result, "rowcount", 0) or 0)
                if count:
                    moved[f"{table.name}.{col.name}"] = count
    session.expire_all()
    survivor = get_member(session, member_id=survivor_id)
    duplicate = get_member(session, member_id=duplicate_id)
    for attr in ("email", "gender", "birthday_calendar", "birth_year", "birth_month",
                 "birth_day", "referral_source", "referred_by_id"):
        if getattr(survivor, attr) is None and getattr(duplicate, attr) is not None:
            setattr(survivor, attr, getattr(duplicate, attr))
            if attr == "birthday_calendar":
                survivor.birth_leap_month = duplicate.birth_leap_month
    if duplicate.preferences and duplicate.preferences not in survivor.preferences:
        survivor.preferences = "\n".join(p for p in (survivor.preferences,
                                                     duplicate.preferences) if p)
    if survivor.joined_at > duplicate.joined_at:
        survivor.joined_at = duplicate.joined_at  # tenure counts from the first sign-up
    now = clock.now()
    duplicate.status = MemberStatus.MERGED.value
    duplicate.merged_into_id = survivor.id
    duplicate.updated_at = survivor.updated_at = now
    session.add(MemberMerge(survivor_id=survivor.id, merged_id=duplicate.id, at=now,
                            by_user_id=actor.user_id, moved=json.dumps(moved, sort_keys=True)))
    session.flush()
    emit(session, clock=clock, type="member.merged", subject_id=survivor.id,
         payload={"survivor_id": str(survivor.id), "merged_id": str(duplicate.id)})
    audit.record(session, clock=clock, actor=actor, action="member.merged", entity_type="member",
                 entity_id=survivor.id, details={"merged_id": str(duplicate.id), "moved": moved})
    return survivor, moved



def audit_export(session: Session, *, clock: Clock, actor: Principal | None, count: int,
                 filters: dict[str, Any]) -> None:
    audit.record(session, clock=clock, actor=actor, action="member.exported",
                 entity_type="member", details={"count": count, "filters": filters})


# ---------------------------------------------------------------- reads for the member page
# (added for the member 360 page, issue 8)


def get_members(session: Session, *, member_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Member]:
    """Several members by id in one query (missing ids are left out)."""
    wanted = list(dict.fromkeys(member_ids))
    found: dict[uuid.UUID, Member] = {}
    for start in range(0, len(wanted), 500):
        found.update((m.id, m) for m in session.scalars(
            select(Member).where(Member.id.in_(wanted[start:start + 500]))))
    return found


def referred_at_enrolment(session: Session, *, referrer_ids: Collection[uuid.UUID]
                          ) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(referrer, referred member) pairs recorded at enrolment (the referrer's card given
    at sign-up) for the given referrers; merged-away records are left out."""
    if not referrer_ids:
        return []
    rows = session.execute(select(Member.referred_by_id, Member.id).where(
        Member.referred_by_id.in_(list(referrer_ids)),
        Member.status != MemberStatus.MERGED.value).order_by(Member.joined_at))
    return [(referrer, referred) for referrer, referred in rows if referrer is not None]
