"""Surveys against a real database: invitations and their window, answering once through
the token, expiry, results overall / per store / per month, events in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.feedback import rules
from patron.feedback import service as feedback
from patron.feedback.enums import SurveyOccasion, SurveyStatus
from patron.feedback.models import SurveyInvitation, SurveyResponse
from patron.members import service as members
from patron.members.models import Member, Store
from tests.factories import World, make_member, make_store
from tests.feedback.support import count, events

SALE = SurveyOccasion.SALE


def _invite(session: Session, clock: FixedClock, member: Member, ref: str = "sale-1",
            every_n_days: int = feedback.DEFAULT_SURVEY_EVERY_N_DAYS) -> SurveyInvitation:
    invitation = feedback.invite(session, clock=clock, member_id=member.id, occasion=SALE,
                                 source_ref=ref, every_n_days=every_n_days)
    assert invitation is not None
    return invitation


def test_an_invitation_has_a_token_an_expiry_and_an_event(
        session: Session, clock: FixedClock, world: World, member: Member) -> None:
    invitation = _invite(session, clock, member)
    assert len(invitation.token) == 32
    assert (invitation.store_id, invitation.kind, invitation.occasion) == (
        world.store_a.id, "csat_nps", "sale")
    assert invitation.expires_at == clock.now() + timedelta(days=14)
    assert feedback.survey_status(session, clock=clock, invitation=invitation) is (
        SurveyStatus.OPEN)
    (payload,) = events(session, "survey.invited")
    assert payload == {"invitation_id": str(invitation.id), "member_id": str(member.id),
                       "store_id": str(world.store_a.id), "occasion": "sale",
                       "source_ref": "sale-1", "token": invitation.token,
                       "expires_at": invitation.expires_at.isoformat()}


def test_one_invitation_per_occasion_and_per_window(
        session: Session, clock: FixedClock, member: Member) -> None:
    first = _invite(session, clock, member, every_n_days=30)
    assert _invite(session, clock, member, every_n_days=30).id == first.id  # same sale
    assert not feedback.may_invite(session, member_id=member.id, now=clock.now(),
                                   every_n_days=30)
    assert feedback.invite(session, clock=clock, member_id=member.id, occasion=SALE,
                           source_ref="sale-2", every_n_days=30) is None
    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    assert not feedback.may_invite(session, member_id=member.id, now=clock.now(),
                                   every_n_days=30)
    clock.advance(timedelta(seconds=1))
    assert feedback.may_invite(session, member_id=member.id, now=clock.now(),
                               every_n_days=30)
    second = _invite(session, clock, member, "sale-2", every_n_days=30)
    assert second.id != first.id and second.token != first.token
    assert len(events(session, "survey.invited")) == 2


def test_a_survey_is_answered_once(session: Session, clock: FixedClock, world: World,
                                   member: Member) -> None:
    invitation = _invite(session, clock, member)
    response = feedback.answer(session, clock=clock, token=invitation.token, csat=4, nps=9,
                               comment="  Friendly staff ")
    assert (response.csat, response.nps, response.comment) == (4, 9, "Friendly staff")
    with pytest.raises(Conflict) as err:
        feedback.answer(session, clock=clock, token=invitation.token, csat=1)
    assert (err.value.field, err.value.code) == ("token", "already_answered")
    assert count(session, SurveyResponse) == 1
    assert feedback.survey_status(session, clock=clock, invitation=invitation) is (
        SurveyStatus.ANSWERED)
    (payload,) = events(session, "survey.answered")
    assert payload == {"invitation_id": str(invitation.id), "response_id": str(response.id),
                       "member_id": str(member.id), "store_id": str(world.store_a.id),
                       "occasion": "sale", "source_ref": "sale-1", "csat": 4, "nps": 9,
                       "has_comment": True}


def test_the_database_refuses_a_second_response(session: Session, clock: FixedClock,
                                                member: Member) -> None:
    invitation = _invite(session, clock, member)
    feedback.answer(session, clock=clock, token=invitation.token, nps=10)
    session.add(SurveyResponse(invitation_id=invitation.id, csat=5, nps=None, comment="",
                               answered_at=clock.now()))
    with pytest.raises(IntegrityError):
        session.flush()


def test_bad_answers_name_the_field_and_closed_surveys_refuse(
        session: Session, clock: FixedClock, member: Member) -> None:
    invitation = _invite(session, clock, member)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "csat"), ({"csat": 0}, "csat"), ({"csat": 6}, "csat"), ({"nps": -1}, "nps"),
        ({"nps": 11}, "nps"), ({"nps": 5, "comment": "x" * 2001}, "comment")]
    for kwargs, field in cases:
        with pytest.raises(ValidationFailed) as err:
            feedback.answer(session, clock=clock, token=invitation.token, **kwargs)
        assert err.value.field == field
    with pytest.raises(NotFound) as missing:
        feedback.answer(session, clock=clock, token="not-a-token", nps=5)
    assert missing.value.field == "token"
    clock.advance(timedelta(days=rules.SURVEY_VALID_DAYS))
    assert feedback.survey_status(session, clock=clock, invitation=invitation) is (
        SurveyStatus.EXPIRED)
    with pytest.raises(Conflict) as err:
        feedback.answer(session, clock=clock, token=invitation.token, nps=5)
    assert (err.value.field, err.value.code) == ("token", "survey_expired")
    assert count(session, SurveyResponse) == 0


def test_inactive_members_are_not_invited(session: Session, clock: FixedClock,
                                          world: World, manager: Principal) -> None:
    survivor = make_member(session, clock, world.store_a)
    duplicate = make_member(session, clock, world.store_a)
    members.merge_members(session, clock=clock, actor=manager, survivor_id=survivor.id,
                          duplicate_id=duplicate.id)
    assert feedback.invite(session, clock=clock, member_id=duplicate.id, occasion=SALE,
                           source_ref="s") is None


def _answered(session: Session, clock: FixedClock, store: Store, at: datetime,
              csat: int | None, nps: int | None) -> None:
    member = make_member(session, clock, store)
    invitation = _invite(session, clock, member, f"sale-{member.id}")
    answering = FixedClock(at)
    feedback.answer(session, clock=answering, token=invitation.token, csat=csat, nps=nps)


def test_results_overall_per_store_and_per_local_month(
        session: Session, clock: FixedClock, world: World, owner: Principal,
        manager: Principal, manager_b: Principal, cashier: Principal) -> None:
    a, b = world.store_a, world.store_b  # both Asia/Shanghai
    new_york = make_store(session, clock, timezone="America/New_York")
    # 30 Nov 17:00 UTC is 1 December in Shanghai but still 30 November in New York
    end_of_month = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    _answered(session, clock, a, clock.now(), 5, 10)
    _answered(session, clock, a, clock.now(), 2, 3)
    _answered(session, clock, a, end_of_month, None, 9)
    _answered(session, clock, b, clock.now(), 4, 7)
    _answered(session, clock, new_york, end_of_month, 3, None)
    results = feedback.survey_results(session, actor=owner)
    overall = results.overall
    assert (overall.responses, overall.csat_count, overall.nps_count) == (5, 4, 4)
    assert overall.csat_percent == pytest.approx(50.0)  # 5 and 4 of 5, 2, 4, 3
    assert overall.csat_mean == pytest.approx(14 / 4)
    assert overall.nps == pytest.approx(25.0)  # promoters 10, 9; detractor 3; passive 7
    by_store = results.by_store
    assert set(by_store) == {a.id, b.id, new_york.id}
    assert by_store[a.id].nps == pytest.approx(100 * (2 - 1) / 3)
    assert by_store[b.id].nps == 0 and by_store[b.id].csat_percent == 100
    assert by_store[new_york.id].nps is None
    assert {m: s.responses for m, s in results.by_month.items()} == {"2026-11": 4,
                                                                      "2026-12": 1}
    mine = feedback.survey_results(session, actor=manager)
    assert set(mine.by_store) == {a.id} and mine.overall.responses == 3
    assert set(feedback.survey_results(session, actor=manager_b).by_store) == {b.id}
    window = feedback.survey_results(session, actor=owner, since=end_of_month,
                                     until=end_of_month + timedelta(seconds=1))
    assert window.overall.responses == 2
    with pytest.raises(PermissionDenied):
        feedback.survey_results(session, actor=manager_b, store_id=a.id)
    with pytest.raises(PermissionDenied):
        feedback.survey_results(session, actor=cashier)
    with pytest.raises(ValidationFailed) as err:
        feedback.survey_results(session, actor=owner, since=datetime(2026, 11, 1))
    assert err.value.field == "since"
