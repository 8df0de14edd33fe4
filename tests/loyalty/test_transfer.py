"""Points transfers between members: oldest lots first, expiry kept, both sides tied to one
reference, bad input refused naming the field, idempotent over the API, and -- as a
hypothesis property -- any sequence of transfers conserves every member's points exactly
as a reference model of lots says, with the books (``loyalty.verify``) clean."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import AuditEntry
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance, NotFound, ValidationFailed
from patron.loyalty import service as loyalty
from patron.loyalty.enums import PointsEntryKind
from patron.loyalty.models import PointsAccount, PointsEntry, PointsLot, PointsTransfer
from patron.members.models import Member, Store
from tests.conftest import TEST_NOW
from tests.factories import World, key_headers, make_member, make_store, make_user

TZ = "Asia/Shanghai"


def _setup(session: Session, clock: FixedClock) -> tuple[Store, Principal]:
    store = make_store(session, clock)
    owner = auth.principal_for_user(make_user(session, clock, Role.OWNER))
    loyalty.update_program(session, clock=clock, actor=owner, changes={
        "pending_days": 0, "expiry_policy": "months", "expiry_months": 1})
    return store, owner


def _lots(session: Session, member: Member) -> list[tuple[int, datetime | None]]:
    account = session.scalar(select(PointsAccount).where(PointsAccount.member_id == member.id))
    assert account is not None
    return [(lot.remaining, lot.expires_at) for lot in session.scalars(
        select(PointsLot).where(PointsLot.account_id == account.id, PointsLot.remaining > 0)
        .order_by(PointsLot.earned_at, PointsLot.id))]


def _entries(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(PointsEntry)) or 0)


def test_transfer_takes_oldest_lots_first_and_keeps_their_expiry(
        session: Session, clock: FixedClock) -> None:
    store, owner = _setup(session, clock)
    giver, taker = make_member(session, clock, store), make_member(session, clock, store)
    loyalty.earn(session, clock=clock, actor=None, member_id=giver.id, points=100, tz=TZ)
    first_expiry = _lots(session, giver)[0][1]
    clock.advance(timedelta(days=10))
    loyalty.earn(session, clock=clock, actor=None, member_id=giver.id, points=50, tz=TZ)
    second_expiry = _lots(session, giver)[1][1]
    assert first_expiry != second_expiry

    done = loyalty.transfer(session, clock=clock, actor=owner, from_member_id=giver.id,
                            to_member_id=taker.id, points=120, note="for my daughter")

    assert _lots(session, giver) == [(30, second_expiry)]
    assert sorted(_lots(session, taker), key=lambda lot: str(lot[1])) == \
        sorted([(100, first_expiry), (20, second_expiry)], key=lambda lot: str(lot[1]))
    assert loyalty.balance(session, clock=clock, member_id=giver.id).available == 30
    assert loyalty.balance(session, clock=clock, member_id=taker.id).available == 120
    assert done.out_entry.kind == PointsEntryKind.TRANSFER_OUT.value
    assert done.out_entry.available_delta == -120
    assert [e.kind for e in done.in_entries] == [PointsEntryKind.TRANSFER_IN.value] * 2
    assert {e.transfer_id for e in [done.out_entry, *done.in_entries]} == {done.transfer.id}
    assert done.transfer.points == 120 and done.transfer.note == "for my daughter"
    assert loyalty.verify(session) == []
    audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "points.transferred"))
    assert audit is not None and audit.details["points"] == 120
    # transfers are not earnings: neither side's lifetime (tier basis) moves
    assert loyalty.balance(session, clock=clock, member_id=taker.id).lifetime_earned == 0
    assert loyalty.balance(session, clock=clock, member_id=giver.id).lifetime_earned == 150


@pytest.mark.parametrize(("points", "error", "field"), [
    (0, ValidationFailed, "points"), (-5, ValidationFailed, "points"),
    (loyalty.MAX_POINTS + 1, ValidationFailed, "points"), (41, InsufficientBalance, "points"),
])
def test_transfer_refuses_bad_amounts_and_changes_nothing(
        session: Session, clock: FixedClock, points: int, error: type[Exception],
        field: str) -> None:
    store, owner = _setup(session, clock)
    giver, taker = make_member(session, clock, store), make_member(session, clock, store)
    loyalty.earn(session, clock=clock, actor=None, member_id=giver.id, points=40, tz=TZ)
    before = _entries(session)
    with pytest.raises(error) as caught:
        loyalty.transfer(session, clock=clock, actor=owner, from_member_id=giver.id,
                         to_member_id=taker.id, points=points)
    assert getattr(caught.value, "field", None) == field
    assert _entries(session) == before
    assert session.scalar(select(func.count()).select_from(PointsTransfer)) == 0


def test_transfer_refuses_same_member_unknown_member_and_pending_points(
        session: Session, clock: FixedClock) -> None:
    store, owner = _setup(session, clock)
    giver, taker = make_member(session, clock, store), make_member(session, clock, store)
    loyalty.earn(session, clock=clock, actor=None, member_id=giver.id, points=40, tz=TZ)
    with pytest.raises(ValidationFailed) as same:
        loyalty.transfer(session, clock=clock, actor=owner, from_member_id=giver.id,
                         to_member_id=giver.id, points=10)
    assert same.value.field == "to_member_id" and same.value.code == "same_member"
    with pytest.raises(NotFound) as unknown:
        loyalty.transfer(session, clock=clock, actor=owner, from_member_id=giver.id,
                         to_member_id=uuid.uuid4(), points=10)
    assert unknown.value.field == "to_member_id"
    # points still inside the return window are not the member's to give yet
    loyalty.update_program(session, clock=clock, actor=owner, changes={"pending_days": 7})
    loyalty.earn(session, clock=clock, actor=None, member_id=taker.id, points=60, tz=TZ)
    with pytest.raises(InsufficientBalance):
        loyalty.transfer(session, clock=clock, actor=owner, from_member_id=taker.id,
                         to_member_id=giver.id, points=1)
    assert loyalty.verify(session) == []


def test_received_points_do_not_settle_the_receivers_debt(
        session: Session, clock: FixedClock) -> None:
    store, owner = _setup(session, clock)
    giver, taker = make_member(session, clock, store), make_member(session, clock, store)
    loyalty.earn(session, clock=clock, actor=None, member_id=giver.id, points=40, tz=TZ)
    loyalty.adjust(session, clock=clock, actor=owner, member_id=taker.id, points=5,
                   reason="seed", tz=TZ)
    account = session.scalar(select(PointsAccount).where(PointsAccount.member_id == taker.id))
    assert account is not None
    loyalty._append(session, clock=clock, account=account, kind=PointsEntryKind.DEBT, debt=7)
    loyalty.transfer(session, clock=clock, actor=owner, from_member_id=giver.id,
                     to_member_id=taker.id, points=40)
    bal = loyalty.balance(session, clock=clock, member_id=taker.id)
    assert (bal.available, bal.debt) == (45, 7)
    assert loyalty.verify(session) == []


# ---------------------------------------------------------------- property

#: (from, to, points) among four members; amounts may exceed what the sender holds
moves = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(-3, 90)),
                 min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=moves, seed_points=st.lists(st.integers(0, 120), min_size=4, max_size=4))
def test_any_sequence_of_transfers_conserves_points_and_expiry(
        db: Database, moves: list[tuple[int, int, int]], seed_points: list[int]) -> None:
    clock = FixedClock(TEST_NOW)
    session = db.session(write=True)
    try:
        store, owner = _setup(session, clock)
        people = [make_member(session, clock, store) for _ in range(4)]
        for n, (person, pts) in enumerate(zip(people, seed_points, strict=True)):
            clock.advance(timedelta(days=n))  # a different expiry per member's lot
            if pts:
                loyalty.earn(session, clock=clock, actor=None, member_id=person.id,
                             points=pts, tz=TZ)
        model = list(seed_points)
        expiry_before = Counter[object]()
        for person in people:
            if session.scalar(select(PointsAccount.id).where(
                    PointsAccount.member_id == person.id)) is not None:
                for remaining, at in _lots(session, person):
                    expiry_before[at] += remaining
        for sender, receiver, pts in moves:
            ok = sender != receiver and 0 < pts <= model[sender]
            try:
                with session.begin_nested():
                    loyalty.transfer(session, clock=clock, actor=owner,
                                     from_member_id=people[sender].id,
                                     to_member_id=people[receiver].id, points=pts)
            except (ValidationFailed, InsufficientBalance):
                assert not ok, (sender, receiver, pts, model)
                continue
            assert ok, (sender, receiver, pts, model)
            model[sender] -= pts
            model[receiver] += pts
        for person, want in zip(people, model, strict=True):
            assert loyalty.balance(session, clock=clock, member_id=person.id).available == want
        expiry_after = Counter[object]()
        for person in people:
            if session.scalar(select(PointsAccount.id).where(
                    PointsAccount.member_id == person.id)) is not None:
                for remaining, at in _lots(session, person):
                    expiry_after[at] += remaining
        assert +expiry_after == +expiry_before  # points keep the date they expire on
        assert loyalty.verify(session) == []
    finally:
        session.rollback()
        session.close()


# ---------------------------------------------------------------- concurrency, API


def test_opposite_transfers_at_once_neither_deadlock_nor_lose_points(
        db: Database, clock: FixedClock) -> None:
    """Two tills moving points A->B and B->A at the same time: the account locks are taken
    in one order, so PostgreSQL never has to break a deadlock, and the total stays."""
    with db.write() as s:
        store, _ = _setup(s, clock)
        a, b = make_member(s, clock, store), make_member(s, clock, store)
        for m in (a, b):
            loyalty.earn(s, clock=clock, actor=None, member_id=m.id, points=500, tz=TZ)
    errors: list[BaseException] = []

    def run(src: uuid.UUID, dst: uuid.UUID) -> None:
        try:
            for _ in range(25):
                with db.write() as s:
                    loyalty.transfer(s, clock=clock, actor=None, from_member_id=src,
                                     to_member_id=dst, points=7)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a.id, b.id)),
               threading.Thread(target=run, args=(b.id, a.id))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as s:
        assert loyalty.balance(s, clock=clock, member_id=a.id).available == 500
        assert loyalty.balance(s, clock=clock, member_id=b.id).available == 500
        assert s.scalar(select(func.count()).select_from(PointsTransfer)) == 50
        assert loyalty.verify(s) == []


def test_transfer_over_the_api_runs_once_per_idempotency_key(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        owner = auth.principal_for_user(world.owner)
        loyalty.update_program(s, clock=clock, actor=owner, changes={"pending_days": 0})
        giver = make_member(s, clock, world.store_a)
        taker = make_member(s, clock, world.store_b)
        loyalty.earn(s, clock=clock, actor=None, member_id=giver.id, points=300, tz=TZ)
    url = f"/api/v1/members/{giver.id}/points/transfers"
    body = {"to_member_id": str(taker.id), "points": 120}
    headers = key_headers(world.key_a) | {"Idempotency-Key": "gift-1"}
    first = client.post(url, json=body, headers=headers)
    again = client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    got = first.json()
    assert (got["points"], got["from_available"], got["to_available"]) == (120, 180, 120)
    assert got["store_id"] == str(world.store_a.id)  # the POS key's store

    missing = client.post(url, json=body, headers=key_headers(world.key_a))
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "Idempotency-Key"
    too_many = client.post(url, json=body | {"points": 181},
                           headers=key_headers(world.key_a) | {"Idempotency-Key": "gift-2"})
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "points"
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PointsTransfer)) == 1
        assert loyalty.balance(s, clock=clock, member_id=taker.id).available == 120
