"""Staff notes about a member: append-only, signed, dated, for staff of the home store."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import PrincipalKind, Role
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, PermissionDenied, ValidationFailed
from patron.members import notes, privacy
from patron.members import service as members
from patron.members.models import MemberNote
from tests.factories import World, make_member


def test_notes_are_signed_dated_and_listed_newest_first(
    session: Session, clock: FixedClock, world: World
) -> None:
    member = make_member(session, clock, world.store_a, name="Qian Li")
    cashier = auth.principal_for_user(world.cashier_a)
    first = notes.add_note(session, clock=clock, principal=cashier, member_id=member.id,
                           body="  prefers oat milk\nno sugar  ")
    clock.advance(timedelta(hours=2))
    second = notes.add_note(session, clock=clock, principal=auth.principal_for_user(
        world.owner), member_id=member.id, body="birthday cake ordered")
    assert (first.body, first.author_id, first.author_name) == (
        "prefers oat milk\nno sugar", world.cashier_a.id, "cashier-a")
    assert second.created_at - first.created_at == timedelta(hours=2)
    listed = notes.list_notes(session, principal=cashier, member_id=member.id)
    assert [n.id for n in listed] == [second.id, first.id]
    assert [n.id for n in notes.list_notes(session, principal=cashier, member_id=member.id,
                                           limit=1)] == [second.id]
    assert members.get_member(session, member_id=member.id).preferences == ""


@pytest.mark.parametrize(("body", "code"), [("   ", "required"), ("x" * 2001, "too_long")])
def test_a_bad_note_names_the_body_and_adds_nothing(
    session: Session, clock: FixedClock, world: World, body: str, code: str
) -> None:
    member = make_member(session, clock, world.store_a)
    with pytest.raises(ValidationFailed) as refused:
        notes.add_note(session, clock=clock, principal=auth.principal_for_user(world.cashier_a),
                       member_id=member.id, body=body)
    assert [(p.field, p.code) for p in refused.value.problems] == [("body", code)]
    assert session.scalar(select(func.count()).select_from(MemberNote)) == 0


def test_a_note_of_exactly_the_longest_length_is_taken(
    session: Session, clock: FixedClock, world: World
) -> None:
    member = make_member(session, clock, world.store_a)
    note = notes.add_note(session, clock=clock, principal=auth.principal_for_user(world.owner),
                          member_id=member.id, body="长" * notes.MAX_NOTE)
    session.flush()
    assert len(note.body) == notes.MAX_NOTE


def test_notes_are_for_staff_of_the_members_home_store_only(
    session: Session, clock: FixedClock, world: World
) -> None:
    member = make_member(session, clock, world.store_a)
    pos = Principal(kind=PrincipalKind.API_KEY, id=uuid.uuid4(), label="key:till",
                    role=Role.CASHIER, store_ids=frozenset({world.store_a.id}))
    for who in (auth.principal_for_user(world.manager_b), pos):
        with pytest.raises(PermissionDenied):
            notes.add_note(session, clock=clock, principal=who, member_id=member.id, body="x")
        with pytest.raises(PermissionDenied):
            notes.list_notes(session, principal=who, member_id=member.id)
    assert notes.can_use_notes(auth.principal_for_user(world.manager_a), member)
    assert not notes.can_use_notes(auth.principal_for_user(world.manager_b), member)
    assert session.scalar(select(func.count()).select_from(MemberNote)) == 0


def test_an_erased_member_gets_no_notes_and_their_old_notes_lose_their_text(
    session: Session, clock: FixedClock, world: World
) -> None:
    member = make_member(session, clock, world.store_a, name="Sun Mei")
    owner = auth.principal_for_user(world.owner)
    note = notes.add_note(session, clock=clock, principal=owner, member_id=member.id,
                          body="Sun Mei is pregnant, due in May")
    privacy.erase_member(session, clock=clock, principal=owner, member_id=member.id,
                         reason="her request")
    session.refresh(note)
    assert (note.body, note.author_name, note.created_at) == ("", "owner", clock.now())
    with pytest.raises(Conflict):
        notes.add_note(session, clock=clock, principal=owner, member_id=member.id, body="hi")


def test_merging_moves_the_duplicates_notes_to_the_survivor(
    session: Session, clock: FixedClock, world: World
) -> None:
    survivor = make_member(session, clock, world.store_a, phone="13900000001")
    duplicate = make_member(session, clock, world.store_a, phone="13900000002")
    owner = auth.principal_for_user(world.owner)
    notes.add_note(session, clock=clock, principal=owner, member_id=duplicate.id, body="dup")
    members.merge_members(session, clock=clock, actor=owner, survivor_id=survivor.id,
                          duplicate_id=duplicate.id)
    assert [n.body for n in notes.list_notes(session, principal=owner,
                                             member_id=survivor.id)] == ["dup"]
