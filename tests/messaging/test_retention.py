"""Message-log retention (decision 0004): finished messages past the brand's retention lose
their personal content; their rows, dedupe keys, states and campaign ids stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.errors import ValidationFailed
from patron.jobs import daily
from patron.messaging import service as messaging
from patron.messaging.models import Message, MessageEvent
from tests.factories import World, make_member
from tests.messaging.stub import NOW

CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-00000000c0de")


def _queue(session: Session, at: FixedClock, key: str, status: str, **extra: object
           ) -> Message:
    """A message created at ``at``'s time and moved to ``status``, with a provider event."""
    messaging.enqueue(session, clock=at, messages=[messaging.Outgoing(
        dedupe_key=key, channel="sms", purpose="marketing", template="promo", language="zh_CN",
        recipient="+8613911112222", body="王小姐，本周会员日双倍积分", segments=1,
        payload={"sms_params": {"name": "王小姐"}}, campaign_id=CAMPAIGN, **extra)])
    message = session.scalars(select(Message).where(Message.dedupe_key == key)).one()
    message.status = status
    session.add(MessageEvent(message_id=message.id, at=at.now(), status=status,
                             detail="provider: delivered to +8613911112222"))
    session.flush()
    return message


def _set_retention(session: Session, clock: FixedClock, world: World, days: int) -> None:
    messaging.update_policy(session, clock=clock, actor=auth.principal_for_user(world.owner),
                            changes={"log_retention_days": days})


def test_finished_messages_past_retention_lose_address_and_text_but_keep_the_rest(
    session: Session, world: World
) -> None:
    now = FixedClock(NOW)
    _set_retention(session, now, world, 90)
    member = make_member(session, now, world.store_a)
    old = FixedClock(NOW - timedelta(days=91))
    delivered = _queue(session, old, "promo:1", "delivered", member_id=member.id)
    dead = _queue(session, old, "promo:2", "dead")
    waiting = _queue(session, old, "promo:3", "queued")  # still to be sent: untouched
    recent = _queue(session, FixedClock(NOW - timedelta(days=89)), "promo:4", "delivered")

    counts = messaging.purge_message_logs(session, clock=now)

    assert counts == {"purged": 2, "events_blanked": 2}
    for message in (delivered, dead):
        session.refresh(message)
        assert (message.recipient, message.subject, message.body, message.html,
                message.payload, message.purged_at) == ("", "", "", None, {}, NOW)
        events = session.scalars(select(MessageEvent).where(
            MessageEvent.message_id == message.id)).all()
        assert [e.detail for e in events] == [""]
    session.refresh(delivered)
    assert (delivered.dedupe_key, delivered.status, delivered.campaign_id,
            delivered.member_id, delivered.segments, delivered.created_at) == (
        "promo:1", "delivered", CAMPAIGN, member.id, 1, old.now())
    for message in (waiting, recent):
        session.refresh(message)
        assert message.body.startswith("王小姐") and message.purged_at is None
    # the occasion is still known: queuing it again sends nothing
    assert messaging.enqueue(session, clock=now, messages=[messaging.Outgoing(
        dedupe_key="promo:1", channel="sms", purpose="marketing", template="promo",
        language="zh_CN", recipient="+8613911112222", body="again")]) == []
    assert messaging.purge_message_logs(session, clock=now) == {"purged": 0,
                                                                 "events_blanked": 0}


def test_a_purged_dead_letter_cannot_be_re_sent(session: Session, world: World) -> None:
    now = FixedClock(NOW)
    _set_retention(session, now, world, 90)
    dead = _queue(session, FixedClock(NOW - timedelta(days=200)), "hook:1", "dead")
    messaging.purge_message_logs(session, clock=now)
    with pytest.raises(ValidationFailed) as refused:
        messaging.resend(session, clock=now, actor=None, message_id=dead.id)
    assert [(p.field, p.code) for p in refused.value.problems] == [("message_id", "purged")]
    session.refresh(dead)
    assert dead.status == "dead"


def test_purging_goes_in_batches_oldest_first_and_stops_at_the_limit(
    session: Session, world: World
) -> None:
    now = FixedClock(NOW)
    _set_retention(session, now, world, 365)
    made = [_queue(session, FixedClock(NOW - timedelta(days=400 + i)), f"k:{i}", "sent")
            for i in range(5)]
    commits: list[int] = []
    first = messaging.purge_message_logs(session, clock=now, batch=2, limit=3,
                                         checkpoint=lambda: commits.append(1))
    assert first["purged"] == 3 and len(commits) == 2  # batches of 2, then the last 1
    purged = {m.dedupe_key for m in session.scalars(
        select(Message).where(Message.purged_at.is_not(None)))}
    assert purged == {m.dedupe_key for m in made[2:]}  # the oldest three
    assert messaging.purge_message_logs(session, clock=now, batch=2)["purged"] == 2


def test_retention_is_set_by_the_owner_within_bounds_naming_the_field(
    session: Session, world: World
) -> None:
    now = FixedClock(NOW)
    assert messaging.get_policy(session, clock=now).log_retention_days == 730
    for days in (89, 3651):
        with pytest.raises(ValidationFailed) as refused:
            _set_retention(session, now, world, days)
        assert [p.field for p in refused.value.problems] == ["log_retention_days"]
    _set_retention(session, now, world, 90)
    assert messaging.get_policy(session, clock=now).log_retention_days == 90
    with pytest.raises(ValidationFailed):
        messaging.purge_message_logs(session, clock=now, batch=0)


def test_the_daily_jobs_purge_what_is_due(session: Session, world: World) -> None:
    now = FixedClock(NOW)
    _queue(session, FixedClock(NOW - timedelta(days=731)), "old", "failed")
    _queue(session, FixedClock(NOW - timedelta(days=729)), "young", "failed")
    counts = daily.run_all(session, now)
    assert counts["message logs.purged"] == 1
    assert daily.run_all(session, now)["message logs.purged"] == 0
