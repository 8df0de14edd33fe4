"""Privacy rights: a member's data export and erasure (DESIGN rule 8)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.models import AuditEntry
from patron.cli.doctor import CHECKS
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, PermissionDenied, ValidationFailed
from patron.loyalty import service as loyalty
from patron.members import privacy
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.models import Member
from patron.members.privacy import RequestKind, RequestStatus
from patron.members.privacy_models import DataRequest, MemberErasure
from patron.messaging.models import Message
from patron.sales.models import Sale
from patron.wallet import service as wallet
from tests.factories import World, make_member
from tests.members.privacy_support import Rich, find_strings, rich_member


@pytest.fixture
def rich(session: Session, clock: FixedClock, world: World) -> Rich:
    return rich_member(session, clock, world)


def _books(session: Session, clock: FixedClock, member_id: uuid.UUID) -> tuple[object, ...]:
    """Balances and totals that an erasure must leave exactly as they were."""
    totals = session.execute(select(func.count(), func.sum(Sale.total_minor))
                             .where(Sale.member_id == member_id)).one()
    return (loyalty.balance(session, clock=clock, member_id=member_id),
            wallet.balance(session, member_id=member_id),
            len(loyalty.entries(session, member_id=member_id, limit=10_000)),
            len(wallet.entries(session, member_id=member_id, limit=10_000)),
            tuple(totals))


def _doctor(session: Session) -> list[str]:
    return [p for _, check in CHECKS for p in check(session)]


def _audit(session: Session, action: str, member_id: object) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.action == action, AuditEntry.entity_id == str(member_id))))


# ---------------------------------------------------------------- export


def test_every_table_about_members_is_classified_for_erasure() -> None:
    """A new table with rows about members must say what erasure does with it."""
    assert privacy.unclassified_tables() == []
    links = privacy.member_links()
    for name in ("sales", "sale_lines", "points_entries", "wallet_entries", "coupons",
                 "messages", "message_events", "complaints", "complaint_events",
                 "callback_tasks", "callback_calls", "survey_responses", "consent_events",
                 "member_scores", "data_requests"):
        assert name in links, name
    assert "stores" not in links and "products" not in links and "users" not in links


def test_export_holds_every_domains_data_and_is_audited(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    other = make_member(session, clock, world.store_a, name="Someone Else")
    data = privacy.export_member(session, clock=clock, principal=manager,
                                 member_id=rich.member.id)
    profile = data["profile"]
    assert (profile["name"], profile["phone"], profile["email"]) == (
        rich.name, rich.phone_e164, rich.email)
    assert profile["birth_month"] == 5 and profile["tags"] and profile["anniversaries"]
    records = data["records"]
    for table in ("sales", "sale_lines", "sale_payments", "points_entries", "points_lots",
                  "wallet_entries", "wallet_accounts", "coupons", "coupon_redemptions",
                  "messages", "inbound_messages", "complaints", "complaint_events",
                  "callback_tasks", "callback_calls", "survey_invitations",
                  "survey_responses", "consent_events", "referral_codes", "member_otps"):
        assert records.get(table), table
    assert len(records["coupons"]) == 2 and len(records["messages"]) == 2
    assert records["survey_responses"][0]["comment"].startswith(rich.name)
    assert "code_hash" not in records["member_otps"][0]  # secrets stay out
    assert data["wallet"]["total_minor"] == 40_000
    assert data["points"]["available"] + data["points"]["pending"] > 0
    assert [c["note"] for c in data["consents"]][-1] == f"{rich.name} changed her mind"
    flat = str(data)
    assert str(other.id) not in flat and "Someone Else" not in flat
    entries = _audit(session, "member.data_exported", rich.member.id)
    assert len(entries) == 1 and entries[0].actor_user_id == world.manager_a.id


def test_export_is_refused_to_cashiers_pos_and_other_stores_managers(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    for user in (world.cashier_a, world.manager_b):
        with pytest.raises(PermissionDenied):
            privacy.export_member(session, clock=clock, principal=auth.principal_for_user(user),
                                  member_id=rich.member.id)
    assert _audit(session, "member.data_exported", rich.member.id) == []


def test_export_fulfils_the_pending_export_request(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    request = privacy.request_data(session, clock=clock, actor=None, member_id=rich.member.id,
                                   kind=RequestKind.EXPORT, source="self_service")
    again = privacy.request_data(session, clock=clock, actor=None, member_id=rich.member.id,
                                 kind=RequestKind.EXPORT, source="self_service")
    assert again.id == request.id
    owner = auth.principal_for_user(world.owner)
    privacy.export_member(session, clock=clock, principal=owner, member_id=rich.member.id)
    session.refresh(request)
    assert (request.status, request.handled_by_id) == ("done", world.owner.id)
    assert request.handled_at == clock.now()


# ---------------------------------------------------------------- erasure


def test_erasure_removes_every_personal_string_from_every_table(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    assert find_strings(session, rich.secrets)  # the scan sees them before
    owner = auth.principal_for_user(world.owner)
    result = privacy.erase_member(session, clock=clock, principal=owner,
                                  member_id=rich.member.id, reason="member asked in store")
    assert not result.already_erased and result.changed["messages"] == 2
    assert find_strings(session, rich.secrets) == []
    member = members.get_member(session, member_id=rich.member.id)
    assert member.status == MemberStatus.DELETED.value
    assert (member.phone, member.email, member.name, member.birth_year) == (None, None, "",
                                                                             None)
    assert not member.sms_consent and not member.email_consent


def test_erasure_keeps_ledgers_sales_and_totals_and_doctor_stays_clean(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    before = _books(session, clock, rich.member.id)
    assert _doctor(session) == []
    privacy.erase_member(session, clock=clock, principal=auth.principal_for_user(world.owner),
                         member_id=rich.member.id, reason="member asked in store")
    session.expire_all()
    assert _books(session, clock, rich.member.id) == before
    assert _doctor(session) == []


def test_an_erased_member_cannot_be_found_or_messaged(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    privacy.erase_member(session, clock=clock, principal=auth.principal_for_user(world.owner),
                         member_id=rich.member.id, reason="member asked by e-mail")
    assert members.find_by_phone(session, phone_e164=rich.phone_e164) is None
    assert members.find_by_card(session, card_no=rich.card_no) is None
    for q in (rich.phone_national, rich.phone_national[-4:], rich.card_no, rich.name):
        for status in MemberStatus:
            _rows, total = members.search_members(
                session, query=members.MemberQuery(q=q, status=status), region="CN")
            assert total == 0, (q, status)
    statuses = set(session.scalars(select(Message.status)
                                   .where(Message.member_id == rich.member.id)))
    assert statuses <= {"suppressed", "sent", "delivered", "dead"}
    assert "queued" not in statuses
    # the phone is free again: the same person may join afresh
    again = make_member(session, clock, world.store_a, phone=rich.phone_national)
    assert again.id != rich.member.id


def test_erasure_is_idempotent_audited_and_closes_the_request(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    request = privacy.request_data(session, clock=clock, actor=None, member_id=rich.member.id,
                                   kind=RequestKind.ERASURE, source="self_service")
    owner = auth.principal_for_user(world.owner)
    first = privacy.erase_member(session, clock=clock, principal=owner,
                                 member_id=rich.member.id, reason="request by the member",
                                 request_id=request.id)
    card = members.get_member(session, member_id=rich.member.id).card_no
    second = privacy.erase_member(session, clock=clock, principal=owner,
                                  member_id=rich.member.id, reason="again")
    assert second.already_erased and second.changed == {}
    assert second.erased_at == first.erased_at
    assert members.get_member(session, member_id=rich.member.id).card_no == card
    entries = _audit(session, "member.erased", rich.member.id)
    assert len(entries) == 1
    assert entries[0].actor_user_id == world.owner.id and entries[0].at == clock.now()
    assert entries[0].details["reason"] == "request by the member"
    assert entries[0].details["request_id"] == str(request.id)
    session.refresh(request)
    assert request.status == RequestStatus.DONE.value
    mark = session.get(MemberErasure, rich.member.id)
    assert mark is not None and mark.request_id == request.id
    with pytest.raises(Conflict):
        privacy.request_data(session, clock=clock, actor=None, member_id=rich.member.id,
                             kind=RequestKind.EXPORT, source="self_service")


@pytest.mark.parametrize("who", ["cashier_a", "manager_a"])
def test_erasure_is_refused_below_owner_and_changes_nothing(
    session: Session, clock: FixedClock, world: World, rich: Rich, who: str
) -> None:
    with pytest.raises(PermissionDenied):
        privacy.erase_member(session, clock=clock,
                             principal=auth.principal_for_user(getattr(world, who)),
                             member_id=rich.member.id, reason="because")
    assert members.find_by_phone(session, phone_e164=rich.phone_e164) is not None
    assert session.get(MemberErasure, rich.member.id) is None


def test_erasure_needs_a_reason_naming_the_field(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        privacy.erase_member(session, clock=clock, principal=auth.principal_for_user(world.owner),
                             member_id=rich.member.id, reason="   ")
    assert caught.value.field == "reason"
    assert session.get(MemberErasure, rich.member.id) is None


def test_erasure_also_erases_records_merged_into_the_member(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    survivor = make_member(session, clock, world.store_a, name="Qian Survivor")
    duplicate = make_member(session, clock, world.store_a, name="Qian Duplicate",
                            email="qian.dup@example.com")
    dup_phone, dup_card = duplicate.phone, duplicate.card_no
    members.merge_members(session, clock=clock, actor=owner, survivor_id=survivor.id,
                          duplicate_id=duplicate.id)
    with pytest.raises(Conflict):  # the tombstone is erased through its survivor
        privacy.erase_member(session, clock=clock, principal=owner, member_id=duplicate.id,
                             reason="x")
    privacy.erase_member(session, clock=clock, principal=owner, member_id=survivor.id,
                         reason="member asked")
    assert find_strings(session, ["Qian", "qian.dup@example.com", dup_phone or "?"]) == []
    assert members.find_by_card(session, card_no=dup_card) is None
    tomb = session.get(Member, duplicate.id)
    assert tomb is not None and tomb.status == MemberStatus.MERGED.value


def test_requests_are_listed_for_managers_of_the_members_store(
    session: Session, clock: FixedClock, world: World
) -> None:
    member = make_member(session, clock, world.store_a)
    cashier = auth.principal_for_user(world.cashier_a)
    made = privacy.request_data(session, clock=clock, actor=cashier, member_id=member.id,
                                kind=RequestKind.ERASURE, source="staff")
    assert made.requested_by_id == world.cashier_a.id and made.source == "staff"
    listed = privacy.list_requests(session, actor=auth.principal_for_user(world.manager_a),
                                   status=RequestStatus.PENDING)
    assert [r.id for r in listed] == [made.id]
    assert privacy.list_requests(session, actor=auth.principal_for_user(world.manager_b)) == []
    with pytest.raises(PermissionDenied):
        privacy.list_requests(session, actor=cashier)
    with pytest.raises(PermissionDenied):
        privacy.cancel_request(session, clock=clock,
                               actor=auth.principal_for_user(world.manager_b),
                               request_id=made.id)
    with pytest.raises(ValidationFailed) as caught:
        privacy.request_data(session, clock=clock, actor=cashier, member_id=member.id,
                             kind=RequestKind.EXPORT, source="fax")
    assert caught.value.field == "source"
    cancelled = privacy.cancel_request(session, clock=clock,
                                       actor=auth.principal_for_user(world.manager_a),
                                       request_id=made.id)
    assert cancelled.status == "cancelled"
    assert session.scalar(select(func.count()).select_from(DataRequest)) == 1
