"""Complaints against a real database: SLA at opening, the workflow, compensation, scoping."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, PermissionDenied, ValidationFailed
from patron.core.events import OutboxEvent
from patron.feedback import service as feedback
from patron.feedback.enums import CallbackReason, ComplaintStatus, SlaState
from patron.feedback.models import (
    CallbackTask,
    Complaint,
    ComplaintCompensation,
    ComplaintEvent,
)
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.loyalty.enums import PointsEntryKind
from patron.members.models import Member
from patron.offers import service as offers
from patron.offers.enums import CouponSource
from patron.offers.models import Coupon
from tests.factories import World
from tests.feedback.support import count, events
from tests.offers.support import make_template

S = ComplaintStatus


def _open(session: Session, clock: FixedClock, actor: Principal | None,
          member: Member | None = None, **overrides: Any) -> Complaint:
    data: dict[str, Any] = {"channel": "in_store", "category": "wait_time",
                            "description": "Waited 40 minutes at the till",
                            "member_id": member.id if member else None} | overrides
    return feedback.open_complaint(session, clock=clock, actor=actor,
                                   data=ComplaintCreate(**data))


def _in_state(session: Session, clock: FixedClock, manager: Principal, member: Member,
              status: S) -> Complaint:
    """A complaint brought to ``status`` along the workflow."""
    c = _open(session, clock, manager, member)
    if status in (S.IN_PROGRESS, S.RESOLVED, S.CLOSED):
        feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                      to=S.IN_PROGRESS)
    if status in (S.RESOLVED, S.CLOSED):
        feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                   resolution="Apologised")
    if status is S.CLOSED:
        feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                      to=S.CLOSED)
    assert c.status == status.value
    return c


def test_opening_fixes_the_sla_deadlines_and_emits_complaint_opened(
        session: Session, clock: FixedClock, world: World, cashier: Principal,
        member: Member) -> None:
    c = _open(session, clock, cashier, member, severity="critical")
    now = clock.now()
    assert (c.store_id, c.status, c.opened_by) == (world.store_a.id, "open", "cashier-a")
    assert c.first_response_due_at == now + timedelta(hours=4)
    assert c.resolution_due_at == now + timedelta(hours=24)
    assert feedback.sla_state_of(c, now=now) is SlaState.OK
    (opened,) = feedback.complaint_events(session, complaint_id=c.id)
    assert (opened.kind, opened.from_status, opened.to_status) == ("opened", None, "open")
    (payload,) = events(session, "complaint.opened")
    assert (payload["complaint_id"], payload["member_id"], payload["store_id"]) == (
        str(c.id), str(member.id), str(world.store_a.id))
    row = session.scalar(select(OutboxEvent).where(OutboxEvent.type == "complaint.opened"))
    assert row is not None and (row.subject_id, row.store_id) == (member.id, c.store_id)


def test_a_complaint_without_member_needs_a_store_or_a_one_store_caller(
        session: Session, clock: FixedClock, world: World, owner: Principal,
        cashier: Principal) -> None:
    with pytest.raises(ValidationFailed) as err:
        _open(session, clock, owner)
    assert err.value.field == "store_id"
    c = _open(session, clock, cashier, contact="+86 139 1234 5678")
    assert (c.store_id, c.member_id, c.contact) == (world.store_a.id, None,
                                                    "+86 139 1234 5678")
    c = _open(session, clock, None, store_id=world.store_b.id)
    assert (c.store_id, c.opened_by) == (world.store_b.id, "system")


def test_sla_state_follows_the_clock_and_the_first_response(
        session: Session, clock: FixedClock, manager: Principal, member: Member) -> None:
    c = _open(session, clock, manager, member, severity="high")  # 24 h / 72 h
    clock.advance(timedelta(hours=18))
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.DUE_SOON
    feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                  to=S.IN_PROGRESS)
    assert c.first_response_at == clock.now()
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.OK
    clock.advance(timedelta(hours=36))  # 54 h of 72 h
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.DUE_SOON
    clock.advance(timedelta(hours=18, seconds=1))
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.BREACHED


def test_an_untouched_complaint_breaches_its_first_response(
        session: Session, clock: FixedClock, manager: Principal, member: Member) -> None:
    c = _open(session, clock, manager, member, severity="critical")
    clock.advance(timedelta(hours=4, minutes=1))
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.BREACHED
    feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                               resolution="Refunded")
    assert feedback.sla_state_of(c, now=clock.now()) is SlaState.BREACHED
    assert events(session, "complaint.resolved")[0]["sla_state"] == "breached"


@pytest.mark.parametrize("start", list(S))
def test_every_invalid_transition_is_refused_and_writes_nothing(
        session: Session, clock: FixedClock, manager: Principal, member: Member,
        start: S) -> None:
    c = _in_state(session, clock, manager, member, start)
    session.flush()
    before = (count(session, ComplaintEvent), count(session, OutboxEvent), c.updated_at)
    allowed = {(S.OPEN, S.IN_PROGRESS), (S.RESOLVED, S.CLOSED), (S.RESOLVED, S.IN_PROGRESS)}
    for target in S:
        if target is S.RESOLVED or (start, target) in allowed:
            continue
        with pytest.raises(Conflict) as err:
            feedback.transition_complaint(session, clock=clock, actor=manager,
                                          complaint_id=c.id, to=target)
        assert (err.value.field, err.value.code) == ("to", "invalid_transition")
        assert f"cannot move to {target.value}" in err.value.message
    with pytest.raises(ValidationFailed) as v:
        feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                      to=S.RESOLVED)
    assert (v.value.field, v.value.code) == ("to", "use_resolve")
    if start in (S.RESOLVED, S.CLOSED):
        with pytest.raises(Conflict) as err:
            feedback.resolve_complaint(session, clock=clock, actor=manager,
                                       complaint_id=c.id, resolution="again")
        assert (err.value.field, err.value.code) == ("status", "invalid_transition")
    session.expire_all()
    reloaded = session.get(Complaint, c.id)
    assert reloaded is not None and reloaded.status == start.value
    assert (count(session, ComplaintEvent), count(session, OutboxEvent),
            c.updated_at) == before


def test_each_step_is_an_event_and_reopening_clears_the_resolution_time(
        session: Session, clock: FixedClock, manager: Principal, member: Member) -> None:
    c = _open(session, clock, manager, member)
    clock.advance(timedelta(hours=1))
    feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                  to=S.IN_PROGRESS, note="Calling the customer")
    clock.advance(timedelta(hours=1))
    feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                               resolution="Apologised and explained")
    assert c.resolved_at == clock.now() and c.resolution == "Apologised and explained"
    clock.advance(timedelta(hours=1))
    feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                  to=S.IN_PROGRESS, note="Customer came back")
    assert c.resolved_at is None and c.status == "in_progress"
    feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                               resolution="Replaced the product")
    feedback.transition_complaint(session, clock=clock, actor=None, complaint_id=c.id,
                                  to=S.CLOSED)
    assert c.closed_at == clock.now()
    steps = [(e.kind, e.from_status, e.to_status, e.actor_label)
             for e in feedback.complaint_events(session, complaint_id=c.id)]
    assert steps == [
        ("opened", None, "open", "manager-a"),
        ("status_changed", "open", "in_progress", "manager-a"),
        ("status_changed", "in_progress", "resolved", "manager-a"),
        ("reopened", "resolved", "in_progress", "manager-a"),
        ("status_changed", "in_progress", "resolved", "manager-a"),
        ("status_changed", "resolved", "closed", "system"),
    ]
    assert c.first_response_at == c.opened_at + timedelta(hours=1)
    assert len(events(session, "complaint.resolved")) == 2
    assert events(session, "complaint.reopened")[0]["complaint_id"] == str(c.id)


def test_resolution_compensates_with_a_coupon_and_points_exactly_once(
        session: Session, clock: FixedClock, world: World, manager: Principal,
        member: Member) -> None:
    template = make_template(session, clock, manager)
    c = _open(session, clock, manager, member)
    done = feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                      resolution="Sorry", coupon_template_id=template.id,
                                      points=200)
    comp = done.compensation
    assert comp is not None and comp.points == 200 and comp.actor_label == "manager-a"
    (coupon,) = offers.list_member_coupons(session, member_id=member.id)
    assert (coupon.id, coupon.source, coupon.source_ref) == (comp.coupon_id,
                                                             CouponSource.CARE.value, str(c.id))
    assert loyalty.balance(session, clock=clock, member_id=member.id).available == 200
    (entry,) = loyalty.entries(session, member_id=member.id)
    assert (entry.id, entry.kind, entry.available_delta) == (comp.points_entry_id,
                                                             PointsEntryKind.ADJUST.value, 200)
    assert str(c.id) in entry.reason
    (payload,) = events(session, "complaint.resolved")
    assert payload == {"complaint_id": str(c.id), "member_id": str(member.id),
                       "store_id": str(world.store_a.id), "severity": "normal",
                       "category": "wait_time", "channel": "in_store", "sla_state": "ok",
                       "coupon_id": str(coupon.id), "points": 200}
    # reopened and resolved again: no second compensation, and nothing moves
    feedback.transition_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                  to=S.IN_PROGRESS)
    with pytest.raises(Conflict) as err:
        feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                   resolution="Sorry again", points=100)
    assert (err.value.field, err.value.code) == ("compensation", "already_compensated")
    assert c.status == "in_progress"
    feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                               resolution="Sorry again")
    assert len(offers.list_member_coupons(session, member_id=member.id)) == 1
    assert loyalty.balance(session, clock=clock, member_id=member.id).available == 200
    assert len(loyalty.entries(session, member_id=member.id)) == 1
    assert count(session, ComplaintCompensation) == 1
    assert loyalty.verify(session) == [] and offers.verify(session) == []


def test_a_refusal_half_way_through_compensation_leaves_nothing_written(
        session: Session, clock: FixedClock, manager: Principal, member: Member) -> None:
    template = make_template(session, clock, manager)
    c = _open(session, clock, manager, member)
    session.flush()
    before = count(session, OutboxEvent), count(session, ComplaintEvent)
    with pytest.raises(ValidationFailed) as err:  # the coupon is issued, then points refused
        feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                   resolution="Sorry", coupon_template_id=template.id,
                                   points=2_000_000_000)
    assert err.value.field == "compensation.points"
    assert count(session, Coupon) == 0
    assert count(session, ComplaintCompensation) == 0
    assert (count(session, OutboxEvent), count(session, ComplaintEvent)) == before
    assert (c.status, c.resolved_at, c.first_response_at) == ("open", None, None)
    offers.deactivate_template(session, clock=clock, actor=manager, template_id=template.id)
    with pytest.raises(ValidationFailed) as err:
        feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                   resolution="Sorry", coupon_template_id=template.id)
    assert (err.value.field, err.value.code) == ("compensation.coupon_template_id",
                                                 "template_inactive")
    assert [p.field for p in err.value.problems] == ["compensation.coupon_template_id"]


def test_compensation_needs_a_member_and_points_need_a_manager(
        session: Session, clock: FixedClock, world: World, manager: Principal,
        member: Member) -> None:
    anonymous = _open(session, clock, manager, store_id=world.store_a.id)
    with pytest.raises(ValidationFailed) as err:
        feedback.resolve_complaint(session, clock=clock, actor=manager,
                                   complaint_id=anonymous.id, resolution="x", points=10)
    assert (err.value.field, err.value.code) == ("compensation", "no_member")
    c = _open(session, clock, manager, member)
    with pytest.raises(ValidationFailed) as err:
        feedback.resolve_complaint(session, clock=clock, actor=None, complaint_id=c.id,
                                   resolution="x", points=10)
    assert (err.value.field, err.value.code) == ("compensation.points", "staff_only")
    template = make_template(session, clock, manager)
    done = feedback.resolve_complaint(session, clock=clock, actor=None, complaint_id=c.id,
                                      resolution="Auto-resolved",
                                      coupon_template_id=template.id)
    assert done.compensation is not None and done.compensation.actor_label == "system"
    (coupon,) = offers.list_member_coupons(session, member_id=member.id)
    assert coupon.issued_by == "system"


def test_resolving_can_plan_a_follow_up_call(session: Session, clock: FixedClock,
                                             world: World, manager: Principal,
                                             member: Member) -> None:
    c = _open(session, clock, manager, member)
    with pytest.raises(ValidationFailed) as err:
        feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                   resolution="x", follow_up_on=date(2026, 11, 1))
    assert err.value.field == "follow_up_on"
    done = feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=c.id,
                                      resolution="Refunded", follow_up_on=date(2026, 11, 30))
    task = done.follow_up
    assert task is not None
    assert (task.reason, task.complaint_id, task.member_id, task.store_id, task.due_on) == (
        CallbackReason.COMPLAINT_FOLLOW_UP.value, c.id, member.id, world.store_a.id,
        date(2026, 11, 30))
    assert count(session, CallbackTask) == 1


def test_cashiers_and_tills_open_complaints_but_only_managers_move_them(
        session: Session, clock: FixedClock, cashier: Principal, member: Member) -> None:
    c = _open(session, clock, cashier, member)
    with pytest.raises(PermissionDenied):
        feedback.transition_complaint(session, clock=clock, actor=cashier, complaint_id=c.id,
                                      to=S.IN_PROGRESS)
    with pytest.raises(PermissionDenied):
        feedback.resolve_complaint(session, clock=clock, actor=cashier, complaint_id=c.id,
                                   resolution="x")
    assert feedback.get_complaint(session, actor=cashier, complaint_id=c.id) is c


def test_managers_see_and_move_only_their_stores_complaints(
        session: Session, clock: FixedClock, world: World, manager: Principal,
        manager_b: Principal, owner: Principal, member: Member) -> None:
    a = _open(session, clock, manager, member)
    b = _open(session, clock, manager_b, store_id=world.store_b.id)
    with pytest.raises(PermissionDenied):
        feedback.get_complaint(session, actor=manager_b, complaint_id=a.id)
    with pytest.raises(PermissionDenied):
        feedback.transition_complaint(session, clock=clock, actor=manager_b,
                                      complaint_id=a.id, to=S.IN_PROGRESS)
    with pytest.raises(PermissionDenied):
        feedback.list_complaints(session, actor=manager_b, store_id=world.store_a.id)
    with pytest.raises(PermissionDenied):
        _open(session, clock, manager_b, member, store_id=world.store_a.id)
    assert [x.id for x in feedback.list_complaints(session, actor=manager_b)] == [b.id]
    assert [x.id for x in feedback.list_complaints(session, actor=manager)] == [a.id]
    assert {x.id for x in feedback.list_complaints(session, actor=owner)} == {a.id, b.id}
    assert feedback.list_complaints(session, actor=owner, status=S.RESOLVED) == []
    assert [x.id for x in feedback.list_complaints(session, actor=owner,
                                                   member_id=member.id)] == [a.id]
    assert a.status == "open"
