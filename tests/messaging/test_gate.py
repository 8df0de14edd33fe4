"""The send-time gate: consent, a guardian for minors, quiet hours in the store's zone, the
weekly cap, and opt-outs by SMS reply or link that stop queued marketing at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.core.clock import FixedClock
from patron.core.errors import ValidationFailed
from patron.members import service as members
from patron.members.enums import Channel
from patron.members.models import ConsentEvent, Member
from patron.messaging import service as messaging
from patron.messaging.channels.base import SendResult
from patron.messaging.models import Message
from tests.factories import World, make_member

SECRET = "test-secret"


def _queue(session: Session, clock: FixedClock, member: Member, *, purpose: str = "marketing",
           channel: str = "sms", key: str | None = None, **payload: object) -> uuid.UUID:
    [mid] = messaging.enqueue(session, clock=clock, messages=[messaging.Outgoing(
        dedupe_key=key or uuid.uuid4().hex, channel=channel, purpose=purpose,
        template="campaign", language="en", recipient=member.phone or "x@example.com",
        body="Hello", member_id=member.id, store_id=member.home_store_id,
        payload=dict(payload))])
    return mid


def _send(session: Session, clock: FixedClock) -> list[uuid.UUID]:
    """Claim what is due and book each as sent, as the worker does."""
    claimed = messaging.claim_due(session, clock=clock)
    for c in claimed:
        messaging.record_result(session, clock=clock, message_id=c.id,
                                result=SendResult.sent("test", f"p-{c.id}"))
    return [c.id for c in claimed]


def _status(session: Session, mid: uuid.UUID) -> tuple[str, str | None]:
    row = session.get(Message, mid)
    assert row is not None
    return row.status, row.reason


@pytest.fixture
def member(session: Session, clock: FixedClock, world: World) -> Member:
    return make_member(session, clock, world.store_a, sms_consent=True, email_consent=False)


def test_marketing_needs_the_channels_consent(session: Session, clock: FixedClock,
                                              member: Member) -> None:
    sms = _queue(session, clock, member, channel="sms")
    mail = _queue(session, clock, member, channel="email")
    claimed = {c.id for c in messaging.claim_due(session, clock=clock)}
    assert claimed == {sms}
    assert _status(session, mail) == ("suppressed", "no_consent")


def test_transactional_goes_without_consent_unless_its_rule_asks(
        session: Session, clock: FixedClock, member: Member) -> None:
    plain = _queue(session, clock, member, purpose="transactional", channel="email")
    strict = _queue(session, clock, member, purpose="transactional", channel="email",
                    requires_consent=True)
    assert {c.id for c in messaging.claim_due(session, clock=clock)} == {plain}
    assert _status(session, strict) == ("suppressed", "no_consent")


def test_a_minor_gets_marketing_only_with_a_guardians_consent(
        session: Session, clock: FixedClock, world: World) -> None:
    child = make_member(session, clock, world.store_a, sms_consent=True,
                        birthday_calendar="solar", birth_year=2015, birth_month=3, birth_day=1)
    mid = _queue(session, clock, child)
    messaging.claim_due(session, clock=clock)
    assert _status(session, mid) == ("suppressed", "minor_without_guardian")
    child.guardian_consent = True
    again = _queue(session, clock, child)
    assert [c.id for c in messaging.claim_due(session, clock=clock)] == [again]
    adult = make_member(session, clock, world.store_a, sms_consent=True,
                        birthday_calendar="solar", birth_year=2012, birth_month=11, birth_day=23)
    grown = _queue(session, clock, adult)  # 14 today: no guardian needed
    assert [c.id for c in messaging.claim_due(session, clock=clock)] == [grown]


def test_quiet_hours_defer_to_the_next_allowed_time_in_the_stores_zone(
        session: Session, world: World) -> None:
    # 22:30 in Shanghai (store A's zone): quiet until 09:00 local = 01:00 UTC next day
    clock = FixedClock(datetime(2026, 11, 23, 14, 30, tzinfo=UTC))
    person = make_member(session, clock, world.store_a, sms_consent=True)
    mid = _queue(session, clock, person)
    receipt = _queue(session, clock, person, purpose="transactional")
    assert _send(session, clock) == [receipt]
    row = session.get(Message, mid)
    assert row is not None and row.status == "queued" and row.reason == "quiet_hours"
    assert row.not_before == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    clock.advance(timedelta(hours=10, minutes=29))  # 08:59 local: still quiet
    assert _send(session, clock) == []
    clock.advance(timedelta(minutes=1))
    assert _send(session, clock) == [mid]


def test_weekly_cap_suppresses_the_message_over_it(session: Session, clock: FixedClock,
                                                   member: Member) -> None:
    policy = messaging.get_policy(session, clock=clock)
    policy.weekly_cap = 2
    sent = []
    for _ in range(3):
        mid = _queue(session, clock, member)
        sent.extend(_send(session, clock))
        clock.advance(timedelta(days=1))
        last = mid
    assert len(sent) == 2
    assert _status(session, last) == ("suppressed", "frequency_cap")
    clock.advance(timedelta(days=6))  # the first two are more than 7 days old now
    fresh = _queue(session, clock, member)
    assert _send(session, clock) == [fresh]


@pytest.mark.parametrize("reply", ["TD", "t", "Stop", "退订", " td. "])
def test_an_sms_reply_withdraws_consent_and_stops_queued_marketing_at_once(
        session: Session, clock: FixedClock, member: Member, reply: str) -> None:
    queued = _queue(session, clock, member)
    receipt = _queue(session, clock, member, purpose="transactional")
    inbound = messaging.receive_sms(session, clock=clock, sender=member.phone or "",
                                    text=reply, region="CN")
    assert inbound.action == "unsubscribed" and inbound.member_id == member.id
    assert [c.id for c in messaging.claim_due(session, clock=clock)] == [receipt]
    assert _status(session, queued) == ("suppressed", "no_consent")
    evidence = session.scalars(select(ConsentEvent).where(
        ConsentEvent.member_id == member.id).order_by(ConsentEvent.seq)).all()
    assert (evidence[-1].channel, evidence[-1].granted, evidence[-1].source) == \
        ("sms", False, "sms_reply")


def test_other_replies_change_nothing(session: Session, clock: FixedClock,
                                      member: Member) -> None:
    inbound = messaging.receive_sms(session, clock=clock, sender=member.phone or "",
                                    text="Thanks, see you Friday", region="CN")
    assert inbound.action == "none" and member.sms_consent


def test_unsubscribe_link_is_signed(session: Session, clock: FixedClock, member: Member) -> None:
    token = messaging.unsubscribe_token(SECRET, member.id, "sms")
    # The last digit always changes: "0" alone would leave one token in sixteen as it was.
    altered = token[:-1] + ("0" if token[-1] != "0" else "1")
    with pytest.raises(ValidationFailed) as forged:
        messaging.unsubscribe(session, clock=clock, secret=SECRET, token=altered)
    assert forged.value.field == "token"
    with pytest.raises(ValidationFailed):
        messaging.unsubscribe(session, clock=clock, secret="another", token=token)
    messaging.unsubscribe(session, clock=clock, secret=SECRET, token=token)
    assert members.get_member(session, member_id=member.id).sms_consent is False


def test_a_dedupe_key_is_queued_once(session: Session, clock: FixedClock,
                                     member: Member) -> None:
    first = _queue(session, clock, member, key="birthday:2026")
    again = messaging.enqueue(session, clock=clock, messages=[messaging.Outgoing(
        dedupe_key="birthday:2026", channel="sms", purpose="marketing", template="birthday",
        language="en", recipient="+8613800000000", body="again", member_id=member.id)])
    assert first and again == []
    assert session.scalar(select(Message.body).where(Message.dedupe_key == "birthday:2026")) \
        == "Hello"


def test_consent_withdrawn_by_staff_also_stops_queued_marketing(
        session: Session, clock: FixedClock, member: Member) -> None:
    queued = _queue(session, clock, member)
    members.change_consent(session, clock=clock, actor=None, member_id=member.id,
                           channel=Channel.SMS, granted=False, source="admin")
    messaging.claim_due(session, clock=clock)
    assert _status(session, queued) == ("suppressed", "no_consent")


def test_one_time_codes_are_not_kept_after_sending(session: Session, clock: FixedClock,
                                                   member: Member) -> None:
    [mid] = messaging.enqueue(session, clock=clock, messages=[messaging.Outgoing(
        dedupe_key="otp:1", channel="sms", purpose="transactional", template="otp",
        language="en", recipient=member.phone or "", body="Your code is 482913",
        member_id=member.id, payload={"sms_params": {"code": "482913"}})])
    assert _send(session, clock) == [mid]
    row = session.get(Message, mid)
    assert row is not None and "482913" not in row.body and row.payload == {}
