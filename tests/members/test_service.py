from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth import service as auth
from patron.catalog.models import Category, Product
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, PermissionDenied, ValidationFailed
from patron.core.events import OutboxEvent
from patron.members import service as members
from patron.members.enums import Channel, MemberStatus
from patron.members.models import ConsentEvent, Member
from patron.members.schemas import AnniversaryIn, MemberCreate, MemberUpdate
from patron.sales.models import Sale, SaleLine
from tests.factories import World, make_member


def _sale(session: Session, clock: FixedClock, world: World, member: Member, amount: int) -> Sale:
    cat = session.scalar(select(Category)) or Category(code="C", name="Coffee", replenish_days=30)
    session.add(cat)
    session.flush()
    product = Product(sku=f"P{amount}", name="Beans", category_id=cat.id, price_minor=amount)
    session.add(product)
    session.flush()
    sale = Sale(store_id=world.store_a.id, member_id=member.id, receipt_no=f"R{amount}",
                occurred_at=clock.now(), recorded_at=clock.now(), subtotal_minor=amount,
                total_minor=amount, lines=[SaleLine(line_no=1, product_id=product.id, quantity=1,
                                                    unit_price_minor=amount, total_minor=amount)])
    session.add(sale)
    session.flush()
    return sale


def test_enrolment_stores_e164_card_consent_evidence_and_event(
    session: Session, clock: FixedClock, world: World
) -> None:
    m = make_member(session, clock, world.store_a, phone="139 1234 5678", sms_consent=True,
                    birthday_calendar="lunar", birth_month=8, birth_day=15, tags=["VIP", " vip "])
    assert m.phone == "+8613912345678" and m.phone_last4 == "5678"
    assert len(m.card_no) == 12
    assert [t.tag for t in m.tags] == ["VIP", "vip"]
    events = members.consent_history(session, member_id=m.id)
    assert [(e.channel, e.granted, e.source) for e in events] == [("sms", True, "enrolment")]
    assert m.email_consent is False
    joined = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "member.joined")).all()
    assert [e.subject_id for e in joined] == [m.id]


def test_duplicate_phone_is_a_conflict_on_the_phone_field(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_member(session, clock, world.store_a, phone="13912345678")
    with pytest.raises(Conflict) as err:
        make_member(session, clock, world.store_b, phone="+86 139 1234 5678")
    assert err.value.field == "phone"


def test_a_member_is_recognised_in_every_store(
    session: Session, clock: FixedClock, world: World
) -> None:
    m = make_member(session, clock, world.store_a, phone="13912345678")
    rows, total = members.search_members(
        session, query=members.MemberQuery(q="5678"), region="CN")
    assert total == 1 and rows[0].id == m.id  # no store filter: the chain shares members


def test_search_by_phone_last4_card_and_name_prefix(
    session: Session, clock: FixedClock, world: World
) -> None:
    a = make_member(session, clock, world.store_a, name="王小明", phone="13912345678")
    b = make_member(session, clock, world.store_a, name="王芳", phone="13698765678")
    c = make_member(session, clock, world.store_b, name="Li Lei", phone="13700001111")

    def ids(q: str) -> set[str]:
        rows, _ = members.search_members(session, query=members.MemberQuery(q=q), region="CN")
        return {r.name for r in rows}

    assert ids("5678") == {a.name, b.name}
    assert ids("139 1234 5678") == {a.name}
    assert ids("+8613700001111") == {c.name}
    assert ids(c.card_no) == {c.name}
    assert ids("王") == {a.name, b.name}
    assert ids("王小") == {a.name}
    assert ids("1234") == set()
    with pytest.raises(ValidationFailed) as err:
        members.search_members(session, query=members.MemberQuery(page_size=500), region="CN")
    assert err.value.field == "page_size"


def test_update_validates_before_changing_anything(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    m = make_member(session, clock, world.store_a, name="Before")
    with pytest.raises(ValidationFailed) as err:
        members.update_member(session, clock=clock, actor=owner, region="CN", member_id=m.id,
                              data=MemberUpdate(name="After", birth_month=2, birth_day=31))
    assert err.value.field == "birth_day"
    session.rollback()
    fresh = session.get(Member, m.id)
    assert fresh is None or fresh.name == "Before"


def test_update_is_audited_with_the_changed_fields(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    m = make_member(session, clock, world.store_a)
    members.update_member(session, clock=clock, actor=owner, region="CN", member_id=m.id,
                          data=MemberUpdate(preferences="不吃辣", tags=["宝妈"],
                                            anniversaries=[AnniversaryIn(kind="wedding",
                                                                         on=date(2015, 5, 20))]))
    entry = audit.list_entries(session, entity_type="member", action="member.updated")[0]
    assert entry.details == {"fields": ["anniversaries", "preferences", "tags"]}
    assert entry.actor_label == "owner"
    assert [a.kind for a in m.anniversaries] == ["wedding"]


def test_consent_withdrawal_is_recorded_as_new_evidence(
    session: Session, clock: FixedClock, world: World
) -> None:
    m = make_member(session, clock, world.store_a, sms_consent=True)
    members.change_consent(session, clock=clock, actor=None, member_id=m.id,
                           channel=Channel.SMS, granted=False, source="sms_reply", note="TD")
    history = members.consent_history(session, member_id=m.id)
    assert [(e.granted, e.source) for e in history] == [(True, "enrolment"), (False, "sms_reply")]
    assert m.sms_consent is False


def test_merge_keeps_all_history_on_the_survivor(
    session: Session, clock: FixedClock, world: World
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    survivor = make_member(session, clock, world.store_a, name="Zhang San", tags=["VIP"])
    clock.advance(date(2026, 11, 24) - date(2026, 11, 23))
    dup = make_member(session, clock, world.store_b, name="Zhang San (old card)",
                      email="zs@example.com", tags=["VIP", "咖啡"], sms_consent=True,
                      birth_month=3, birth_day=8, preferences="likes window seat",
                      anniversaries=[AnniversaryIn(kind="wedding", on=date(2010, 1, 1))])
    s1 = _sale(session, clock, world, survivor, 1000)
    s2 = _sale(session, clock, world, dup, 2500)

    merged, moved = members.merge_members(session, clock=clock, actor=manager,
                                          survivor_id=survivor.id, duplicate_id=dup.id)
    assert moved["sales.member_id"] == 1
    assert {s.id for s in session.scalars(select(Sale).where(Sale.member_id == survivor.id))} \
        == {s1.id, s2.id}
    assert sorted(t.tag for t in merged.tags) == ["VIP", "咖啡"]
    assert [a.kind for a in merged.anniversaries] == ["wedding"]
    assert merged.email == "zs@example.com" and merged.birth_month == 3
    assert "likes window seat" in merged.preferences
    assert merged.sms_consent is False  # a merge never widens consent...
    assert session.scalar(select(func.count()).select_from(ConsentEvent)
                          .where(ConsentEvent.member_id == survivor.id)) == 1  # ...evidence moves
    old = session.get(Member, dup.id)
    assert old is not None and old.status == MemberStatus.MERGED and old.merged_into_id == merged.id
    assert members.find_by_card(session, card_no=dup.card_no) is merged
    # the duplicate's phone is free again for the survivor or a new member
    assert members.find_by_phone(session, phone_e164=dup.phone or "") is None
    assert audit.list_entries(session, action="member.merged")[0].entity_id == str(merged.id)


def test_merge_needs_a_manager_and_two_different_active_members(
    session: Session, clock: FixedClock, world: World
) -> None:
    cashier = auth.principal_for_user(world.cashier_a)
    manager = auth.principal_for_user(world.manager_a)
    a = make_member(session, clock, world.store_a)
    b = make_member(session, clock, world.store_a)
    with pytest.raises(PermissionDenied):
        members.merge_members(session, clock=clock, actor=cashier, survivor_id=a.id,
                              duplicate_id=b.id)
    with pytest.raises(ValidationFailed) as err:
        members.merge_members(session, clock=clock, actor=manager, survivor_id=a.id,
                              duplicate_id=a.id)
    assert err.value.field == "duplicate_id"
    members.merge_members(session, clock=clock, actor=manager, survivor_id=a.id,
                          duplicate_id=b.id)
    with pytest.raises(Conflict) as err2:
        members.merge_members(session, clock=clock, actor=manager, survivor_id=a.id,
                              duplicate_id=b.id)
    assert err2.value.field == "duplicate_id"


def test_soft_delete_hides_but_keeps_the_record(
    session: Session, clock: FixedClock, world: World
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    m = make_member(session, clock, world.store_a, phone="13912345678")
    members.delete_member(session, clock=clock, actor=manager, member_id=m.id)
    _, total = members.search_members(session, query=members.MemberQuery(q="5678"), region="CN")
    assert total == 0
    _, deleted = members.search_members(
        session, query=members.MemberQuery(q="5678", status=MemberStatus.DELETED), region="CN")
    assert deleted == 1
    assert session.get(Member, m.id) is not None


def test_enrolment_needs_an_existing_home_store(session: Session, clock: FixedClock) -> None:
    import uuid

    with pytest.raises(ValidationFailed) as err:
        members.enroll_member(session, clock=clock, actor=None, region="CN", data=MemberCreate(
            name="X", phone="13912345678", home_store_id=uuid.uuid4()))
    assert err.value.field == "home_store_id"
