"""Callback tasks against a real database: defaults, win-back dedupe, overdue at the store's
local day, logging calls, roles and store scoping, merging members."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.feedback import service as feedback
from patron.feedback.enums import CallbackReason, CallbackStatus, CallOutcome
from patron.feedback.models import CallbackTask
from patron.members import service as members
from patron.members.models import Member
from tests.factories import World, make_member, make_store

TODAY = date(2026, 11, 23)  # 10:00 UTC is 18:00 in Shanghai, still the 23rd


def _set(clock: FixedClock, at: datetime) -> None:
    clock.advance(at - clock.now())


def test_a_system_task_defaults_to_the_home_store_and_its_today(
        session: Session, clock: FixedClock, world: World, member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                                    reason=CallbackReason.WIN_BACK)
    assert (task.store_id, task.due_on, task.status, task.created_by) == (
        world.store_a.id, TODAY, "open", "system")
    assert (task.assignee_id, task.outcome, task.attempts, task.completed_at) == (
        None, None, 0, None)


def test_a_manager_assigns_a_task_to_someone_of_the_store(
        session: Session, clock: FixedClock, world: World, manager: Principal,
        member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=manager, member_id=member.id,
                                    due_on=date(2026, 11, 25), assignee_id=world.cashier_a.id,
                                    notes="Ask about the new blend")
    assert (task.reason, task.assignee_id, task.created_by) == (
        "manual", world.cashier_a.id, "manager-a")
    for bad in (world.manager_b.id, world.store_a.id):  # works elsewhere; not a user at all
        with pytest.raises(ValidationFailed) as err:
            feedback.create_callback(session, clock=clock, actor=manager,
                                     member_id=member.id, assignee_id=bad)
        assert err.value.field == "assignee_id"
    owner_task = feedback.create_callback(session, clock=clock, actor=manager,
                                          member_id=member.id, assignee_id=world.owner.id)
    assert owner_task.assignee_id == world.owner.id
    with pytest.raises(ValidationFailed) as err:
        feedback.create_callback(session, clock=clock, actor=manager, member_id=member.id,
                                 due_on=TODAY - timedelta(days=1))
    assert (err.value.field, err.value.code) == ("due_on", "in_past")


def test_a_member_never_gets_two_open_win_back_tasks(
        session: Session, clock: FixedClock, manager: Principal, member: Member) -> None:
    first = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                                     reason=CallbackReason.WIN_BACK)
    again = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                                     reason=CallbackReason.WIN_BACK,
                                     due_on=date(2026, 12, 1))
    assert again.id == first.id and again.due_on == TODAY
    manual = feedback.create_callback(session, clock=clock, actor=manager,
                                      member_id=member.id)
    assert manual.id != first.id  # other reasons are not deduplicated
    feedback.complete_callback(session, clock=clock, actor=manager, task_id=first.id,
                               outcome=CallOutcome.WILL_RETURN)
    later = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                                     reason=CallbackReason.WIN_BACK)
    assert later.id != first.id


def test_the_database_refuses_a_second_open_win_back_task(
        session: Session, clock: FixedClock, member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id,
                                    reason=CallbackReason.WIN_BACK)
    now = clock.now()
    session.add(CallbackTask(store_id=task.store_id, member_id=member.id, reason="win_back",
                             status="open", due_on=TODAY, notes="", attempts=0,
                             created_at=now, created_by="x", updated_at=now))
    with pytest.raises(IntegrityError):
        session.flush()


def test_overdue_is_judged_by_each_stores_local_day(
        session: Session, clock: FixedClock, owner: Principal) -> None:
    shanghai = make_store(session, clock, timezone="Asia/Shanghai")
    new_york = make_store(session, clock, timezone="America/New_York")
    tasks = {}
    for store in (shanghai, new_york):
        m = make_member(session, clock, store)
        tasks[store.timezone] = feedback.create_callback(session, clock=clock, actor=None,
                                                         member_id=m.id)
        assert tasks[store.timezone].due_on == TODAY  # 18:00 in Shanghai, 05:00 in New York

    def overdue() -> set[str]:
        listed = feedback.list_callbacks(session, clock=clock, actor=owner, overdue=True)
        flags = feedback.overdue_flags(session, clock=clock, tasks=list(tasks.values()))
        flagged = {tz for tz, t in tasks.items() if flags[t.id]}
        assert flagged == {tz for tz, t in tasks.items() if t in listed}
        not_listed = feedback.list_callbacks(session, clock=clock, actor=owner, overdue=False)
        assert {t.id for t in not_listed} == {t.id for t in tasks.values()} - {
            t.id for t in listed}
        return flagged

    assert overdue() == set()
    _set(clock, datetime(2026, 11, 23, 15, 59, tzinfo=UTC))  # 23:59 in Shanghai
    assert overdue() == set()
    clock.advance(timedelta(minutes=1))  # midnight in Shanghai, 11:00 in New York
    assert overdue() == {"Asia/Shanghai"}
    _set(clock, datetime(2026, 11, 24, 4, 59, tzinfo=UTC))  # 23:59 in New York
    assert overdue() == {"Asia/Shanghai"}
    clock.advance(timedelta(minutes=1))
    assert overdue() == {"Asia/Shanghai", "America/New_York"}
    one = feedback.list_callbacks(session, clock=clock, actor=owner, store_id=new_york.id,
                                  overdue=True)
    assert [t.id for t in one] == [tasks["America/New_York"].id]


def test_no_answer_may_reschedule_and_any_other_outcome_completes(
        session: Session, clock: FixedClock, world: World, cashier: Principal,
        member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id)
    with pytest.raises(ValidationFailed) as err:
        feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                          outcome=CallOutcome.REACHED, reschedule_on=date(2026, 11, 25))
    assert (err.value.field, err.value.code) == ("reschedule_on", "not_rescheduling")
    with pytest.raises(ValidationFailed) as err:
        feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                          outcome=CallOutcome.NO_ANSWER, reschedule_on=date(2026, 11, 22))
    assert (err.value.field, err.value.code) == ("reschedule_on", "in_past")
    assert task.attempts == 0
    feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                      outcome=CallOutcome.NO_ANSWER, note="voicemail",
                      reschedule_on=date(2026, 11, 25))
    assert (task.status, task.due_on, task.attempts, task.outcome) == (
        "open", date(2026, 11, 25), 1, None)
    clock.advance(timedelta(days=2))
    feedback.complete_callback(session, clock=clock, actor=cashier, task_id=task.id,
                               outcome=CallOutcome.WILL_RETURN, note="Comes on Saturday")
    assert (task.status, task.outcome, task.attempts, task.completed_by) == (
        "done", "will_return", 2, "cashier-a")
    assert task.completed_at == task.last_called_at == clock.now()
    calls = feedback.calls_of(session, task_id=task.id)
    assert [(c.outcome, c.rescheduled_to, c.actor_label, c.actor_user_id) for c in calls] == [
        ("no_answer", date(2026, 11, 25), "cashier-a", world.cashier_a.id),
        ("will_return", None, "cashier-a", world.cashier_a.id)]
    with pytest.raises(Conflict) as conflict:
        feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                          outcome=CallOutcome.REACHED)
    assert (conflict.value.field, conflict.value.code) == ("status", "task_closed")


def test_a_no_answer_without_a_new_day_completes_the_task(
        session: Session, clock: FixedClock, cashier: Principal, member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id)
    feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                      outcome=CallOutcome.NO_ANSWER)
    assert (task.status, task.outcome) == ("done", "no_answer")


def test_managers_cancel_tasks_and_cashiers_cannot(
        session: Session, clock: FixedClock, manager: Principal, cashier: Principal,
        member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=None, member_id=member.id)
    with pytest.raises(PermissionDenied):
        feedback.cancel_callback(session, clock=clock, actor=cashier, task_id=task.id)
    with pytest.raises(PermissionDenied):
        feedback.create_callback(session, clock=clock, actor=cashier, member_id=member.id)
    feedback.cancel_callback(session, clock=clock, actor=manager, task_id=task.id,
                             note="Came back on her own")
    assert (task.status, task.outcome, task.completed_by) == ("cancelled", None, "manager-a")
    assert "Came back on her own" in task.notes
    with pytest.raises(Conflict):
        feedback.cancel_callback(session, clock=clock, actor=None, task_id=task.id)
    with pytest.raises(NotFound):
        feedback.cancel_callback(session, clock=clock, actor=None, task_id=member.id)


def test_store_b_cannot_see_or_touch_store_as_tasks(
        session: Session, clock: FixedClock, world: World, manager: Principal,
        manager_b: Principal, cashier: Principal, member: Member) -> None:
    task = feedback.create_callback(session, clock=clock, actor=manager, member_id=member.id,
                                    assignee_id=world.cashier_a.id)
    with pytest.raises(PermissionDenied):
        feedback.get_callback(session, actor=manager_b, task_id=task.id)
    with pytest.raises(PermissionDenied):
        feedback.log_call(session, clock=clock, actor=manager_b, task_id=task.id,
                          outcome=CallOutcome.REACHED)
    with pytest.raises(PermissionDenied):
        feedback.list_callbacks(session, clock=clock, actor=manager_b,
                                store_id=world.store_a.id)
    with pytest.raises(PermissionDenied):  # B's manager cannot plan calls in store A
        feedback.create_callback(session, clock=clock, actor=manager_b, member_id=member.id)
    assert feedback.list_callbacks(session, clock=clock, actor=manager_b) == []
    mine = feedback.list_callbacks(session, clock=clock, actor=cashier,
                                   assignee_id=world.cashier_a.id,
                                   status=CallbackStatus.OPEN)
    assert [t.id for t in mine] == [task.id]
    assert feedback.list_callbacks(session, clock=clock, actor=cashier,
                                   status=CallbackStatus.DONE) == []


def test_merging_members_keeps_one_open_win_back_task(
        session: Session, clock: FixedClock, world: World, manager: Principal) -> None:
    survivor = make_member(session, clock, world.store_a)
    duplicate = make_member(session, clock, world.store_a)
    kept = feedback.create_callback(session, clock=clock, actor=None, member_id=survivor.id,
                                    reason=CallbackReason.WIN_BACK)
    dropped = feedback.create_callback(session, clock=clock, actor=None,
                                       member_id=duplicate.id, reason=CallbackReason.WIN_BACK)
    manual = feedback.create_callback(session, clock=clock, actor=None,
                                      member_id=duplicate.id)
    members.merge_members(session, clock=clock, actor=manager, survivor_id=survivor.id,
                          duplicate_id=duplicate.id)
    tasks = {t.id: t for t in feedback.list_callbacks(session, clock=clock, actor=manager,
                                                      member_id=survivor.id)}
    assert set(tasks) == {kept.id, dropped.id, manual.id}
    assert tasks[kept.id].status == "open"
    assert tasks[dropped.id].status == "cancelled"
    assert tasks[manual.id].status == "open"
