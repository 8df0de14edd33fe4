"""The care pages: rules with previews, the outbox and its dead letters, the callback
board, complaints with their SLA state, survey figures; who may see and do what."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.care import service as care
from patron.core.clock import FixedClock, local_today
from patron.core.db import Database
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackStatus,
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    SurveyOccasion,
)
from patron.feedback.models import CallbackTask, Complaint
from patron.feedback.schemas import ComplaintCreate
from patron.members.models import Store
from patron.messaging import service as messaging
from patron.messaging.models import Message, MessageEvent, MessagingPolicy
from patron.messaging.templates import BrandView, MemberView, default_renderer
from patron.web.pages.care_inbox import month_keys
from tests.factories import World, make_member
from tests.web.helpers import web_login

HX = {"HX-Request": "true"}


# ---------------------------------------------------------------- helpers


def _section(page: str, attribute: str, value: str) -> str:
    """The HTML of the element carrying ``attribute="value"`` up to the next such one."""
    start = page.index(f'{attribute}="{value}"')
    following = [page.find(f'{attribute}="', start + 1)]
    end = min([i for i in following if i != -1] or [len(page)])
    return page[start:end]


def _column_tasks(page: str, column: str) -> set[str]:
    return set(re.findall(r'data-task="([0-9a-f-]+)"', _section(page, "data-column", column)))


def _count(page: str, attribute: str, key: str) -> int:
    match = re.search(rf'{attribute}="{key}">\s*<span class="stat-label">[^<]*</span>'
                      r'<span class="stat-value">([\d,]+)</span>', page)
    assert match, f"no count for {key}"
    return int(match.group(1).replace(",", ""))


def _rows(page: str) -> list[str]:
    """Statuses of the rows in the main message table (after the dead letters)."""
    table = page[page.index('id="messages"'):]
    return re.findall(r'<tr id="msg-[0-9a-f-]+" data-status="(\w+)"', table)


def _message(s: Session, store: Store, *, channel: str = "sms", status: str = "queued",
             reason: str | None = None, clock: FixedClock) -> uuid.UUID:
    """A message of ``store`` queued now, then put in ``status`` (as the worker would)."""
    (message_id,) = messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
        dedupe_key=f"test:{uuid.uuid4()}", channel=channel, purpose="transactional",
        template="receipt", language="en",
        recipient="+8613912345678" if channel == "sms" else "a@example.com",
        body="hello", store_id=store.id)])
    message = s.get(Message, message_id)
    assert message is not None
    message.status, message.reason = status, reason
    return message_id


# ---------------------------------------------------------------- rules


def test_toggling_a_rule_changes_the_care_service_state(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "owner")
    r = client.post("/care/rules/birthday/enabled", headers=HX,
                    data={"csrf_token": csrf, "store": "brand", "enabled": "0"})
    assert r.status_code == 200
    assert 'id="rule-birthday"' in r.text and 'aria-checked="false"' in r.text
    with db.read() as s:
        assert care.rule_config(s, "birthday")["enabled"] is False
    r = client.post("/care/rules/birthday/enabled", headers=HX,
                    data={"csrf_token": csrf, "store": "brand", "enabled": "1"})
    assert 'aria-checked="true"' in r.text
    with db.read() as s:
        assert care.rule_config(s, "birthday")["enabled"] is True
    # without htmx the form posts and comes back to the page
    r = client.post("/care/rules/holiday/enabled", follow_redirects=False,
                    data={"csrf_token": csrf, "store": "brand", "enabled": "1"})
    assert r.status_code == 303 and r.headers["location"].startswith("/care/rules?store=brand")
    with db.read() as s:
        assert care.rule_config(s, "holiday")["enabled"] is True


def test_a_manager_switches_rules_for_their_own_store_only(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    page = client.get("/care/rules").text
    assert f'<option value="{world.store_a.id}" selected' in page
    assert 'value="brand"' not in page  # the brand-wide scope is the owner's
    r = client.post("/care/rules/winback/enabled", headers=HX,
                    data={"csrf_token": csrf, "store": str(world.store_a.id), "enabled": "0"})
    assert r.status_code == 200
    with db.read() as s:
        assert care.rule_config(s, "winback", world.store_a.id)["enabled"] is False
        assert care.rule_config(s, "winback")["enabled"] is True
        assert care.rule_config(s, "winback", world.store_b.id)["enabled"] is True
    for scope in ("brand", str(world.store_b.id)):
        r = client.post("/care/rules/winback/enabled", headers=HX,
                        data={"csrf_token": csrf, "store": scope, "enabled": "0"})
        assert r.status_code == 403, scope
    with db.read() as s:
        assert care.rule_config(s, "winback")["enabled"] is True
        assert care.rule_config(s, "winback", world.store_b.id)["enabled"] is True


def test_settings_are_saved_and_a_bad_value_names_its_field(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "owner")
    r = client.post("/care/rules/replenishment", headers=HX, data={
        "csrf_token": csrf, "store": "brand", "channels": "sms", "days_before": "-2",
        "prior_strength": "2", "history_days": "365"})
    assert r.status_code == 422
    assert 'id="r-replenishment-days_before-e"' in r.text
    assert "days_before is a number of at least 0" in r.text
    with db.read() as s:
        assert care.rule_config(s, "replenishment")["days_before"] == 3  # unchanged
    r = client.post("/care/rules/replenishment", headers=HX, data={
        "csrf_token": csrf, "store": "brand", "channels": "sms", "days_before": "abc",
        "prior_strength": "2", "history_days": "365"})
    assert r.status_code == 422 and "This value is not valid" in r.text
    r = client.post("/care/rules/replenishment", headers=HX, data={
        "csrf_token": csrf, "store": "brand", "channels": "sms", "days_before": "5",
        "prior_strength": "1.5", "history_days": "200"})
    assert r.status_code == 200 and "Saved." in r.text
    r = client.post("/care/rules/winback", headers=HX, data={
        "csrf_token": csrf, "store": "brand", "channels": ["sms", "email"], "days_away": "60",
        "min_spend_minor": "1500.50", "spend_window_days": "365", "repeat_after_days": "180",
        "coupon_template_id": "", "callback_due_days": "2"})  # "callback" unticked
    assert r.status_code == 200, r.text
    with db.read() as s:
        replenishment = care.rule_config(s, "replenishment")
        winback = care.rule_config(s, "winback")
    assert (replenishment["days_before"], replenishment["channels"],
            replenishment["prior_strength"], replenishment["history_days"]) == \
        (5, ["sms"], 1.5, 200)
    assert winback["min_spend_minor"] == 150_050 and winback["callback"] is False
    assert winback["days_away"] == 60 and winback["enabled"] is True
    assert 'value="1500.50"' in client.get("/care/rules").text


def test_preview_shows_the_rendered_template_with_the_members_name(
    client: TestClient, world: World, db: Database
) -> None:
    web_login(client, "owner")
    page = client.get("/care/rules").text
    assert "not sent between 21:00 and 09:00" in _section(page, "data-rule", "birthday")
    with db.read() as s:  # showing the quiet hours wrote no policy row
        assert s.get(MessagingPolicy, 1) is None
    renderer = default_renderer("en")
    brand = BrandView(name="Patron", currency="CNY")
    sample_en = renderer.preview("birthday", language="en", brand=brand)
    sample_zh = renderer.preview("birthday", language="zh_CN", brand=brand)
    card = _section(page, "data-rule", "birthday")
    assert str(escape(sample_en.sms_text)) in card and str(escape(sample_zh.sms_text)) in card
    assert "Li Na" in card and "李娜" in card  # the sample member, in each language
    # the viewer's language first
    assert card.index('data-preview-language="en"') < card.index('data-preview-language="zh_CN"')


def test_preview_with_a_real_member_uses_their_name(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a, name="Wang Wei")
        member_id, card_no = member.id, member.card_no
    web_login(client, "owner")
    page = client.get("/care/rules", params={"member": str(member_id)}).text
    expected = default_renderer("en").preview(
        "winback", language="en", member=MemberView(name="Wang Wei", card_no=card_no),
        brand=BrandView(name="Patron", currency="CNY"))
    card = _section(page, "data-rule", "winback")
    assert "Wang Wei" in card and str(escape(expected.text)) in card
    assert "Li Na" not in card
    by_card = client.get("/care/rules", params={"card": card_no}).text
    assert "Wang Wei" in _section(by_card, "data-rule", "birthday")
    r = client.get("/care/rules", params={"card": "0000"})
    assert r.status_code == 422 and 'id="e-card">No member has this card number' in r.text
    assert client.get("/care/rules", params={"store": "nowhere"}).status_code == 404


# ---------------------------------------------------------------- outbox


@pytest.fixture
def outbox(db: Database, world: World, clock: FixedClock) -> dict[str, uuid.UUID]:
    """A: 3 queued SMS, 2 sent e-mails, 1 dead SMS; B: 1 dead e-mail, 1 failed SMS."""
    ids: dict[str, uuid.UUID] = {}
    with db.write() as s:
        for i in range(3):
            ids[f"a_queued_{i}"] = _message(s, world.store_a, clock=clock)
        clock.advance(timedelta(days=1))
        for i in range(2):
            ids[f"a_sent_{i}"] = _message(s, world.store_a, channel="email", status="sent",
                                          clock=clock)
        ids["a_dead"] = _message(s, world.store_a, status="dead", reason="provider 503 x8",
                                 clock=clock)
        clock.advance(timedelta(days=1))
        ids["b_dead"] = _message(s, world.store_b, channel="email", status="dead",
                                 reason="smtp 451 greylisted", clock=clock)
        ids["b_failed"] = _message(s, world.store_b, status="failed", reason="bad number",
                                   clock=clock)
    return ids


def test_outbox_counts_and_filters_match_the_messages(
    client: TestClient, world: World, outbox: dict[str, uuid.UUID], clock: FixedClock
) -> None:
    web_login(client, "owner")
    page = client.get("/care/outbox").text
    expected = {"queued": 3, "sent": 2, "dead": 2, "failed": 1, "delivered": 0,
                "sending": 0, "suppressed": 0}
    assert {k: _count(page, "data-count", k) for k in expected} == expected
    assert len(_rows(page)) == 8
    dead_section = page[page.index('id="dead-letters"'):page.index('id="messages"')]
    assert "provider 503 x8" in dead_section and "smtp 451 greylisted" in dead_section
    assert dead_section.count(">Resend</button>") == 2

    page = client.get("/care/outbox", params={"status": "dead"}).text
    assert _rows(page) == ["dead", "dead"]
    page = client.get("/care/outbox", params={"channel": "email"}).text
    assert _count(page, "data-count", "sent") == 2 and _count(page, "data-count", "dead") == 1
    assert _count(page, "data-count", "queued") == 0 and len(_rows(page)) == 3
    page = client.get("/care/outbox", params={"store": str(world.store_b.id)}).text
    assert sorted(_rows(page)) == ["dead", "failed"]
    # dates are the viewer's local days: day 2 holds the sent e-mails and A's dead letter
    day2 = local_today(FixedClock(clock.now() - timedelta(days=1)), "Asia/Shanghai")
    page = client.get("/care/outbox", params={"since": day2.isoformat(),
                                              "until": day2.isoformat()}).text
    assert sorted(_rows(page)) == ["dead", "sent", "sent"]

    r = client.get("/care/outbox", params={"status": "lost"})
    assert r.status_code == 422 and "status is one of" in r.text
    r = client.get("/care/outbox", params={"since": "2026-13-01"})
    assert r.status_code == 422 and "Enter a date" in r.text


def test_outbox_is_paginated(client: TestClient, world: World, db: Database,
                             clock: FixedClock) -> None:
    with db.write() as s:
        for _ in range(55):
            _message(s, world.store_a, clock=clock)
            clock.advance(timedelta(seconds=1))
    web_login(client, "owner")
    first = client.get("/care/outbox").text
    assert len(_rows(first)) == 50 and "Page 1 of 2" in first and "page=2" in first
    second = client.get("/care/outbox", params={"page": "2"}).text
    assert len(_rows(second)) == 5 and "Page 2 of 2" in second


def test_a_manager_sees_only_their_stores_messages(
    client: TestClient, world: World, outbox: dict[str, uuid.UUID]
) -> None:
    web_login(client, "manager-a")
    page = client.get("/care/outbox").text
    assert _count(page, "data-count", "dead") == 1 and _count(page, "data-count", "failed") == 0
    assert "smtp 451 greylisted" not in page and len(_rows(page)) == 6
    assert "+8613912345678" not in page and "****" in page  # a manager sees masked phones
    assert client.get("/care/outbox", params={"store": str(world.store_b.id)}).status_code == 403


def test_resend_requeues_a_dead_message_once(
    client: TestClient, world: World, db: Database, outbox: dict[str, uuid.UUID]
) -> None:
    dead = outbox["a_dead"]
    csrf = web_login(client, "manager-b")
    assert client.post(f"/care/outbox/{dead}/resend",
                       data={"csrf_token": csrf}).status_code == 403  # not their store
    csrf = web_login(client, "cashier-a")
    assert client.post(f"/care/outbox/{dead}/resend",
                       data={"csrf_token": csrf}).status_code == 403
    csrf = web_login(client, "manager-a")
    r = client.post(f"/care/outbox/{dead}/resend", headers=HX, data={"csrf_token": csrf})
    assert r.status_code == 200 and 'data-status="queued"' in r.text
    r = client.post(f"/care/outbox/{dead}/resend", headers=HX, data={"csrf_token": csrf})
    assert r.status_code == 422 and "Only dead or failed messages can be re-sent" in r.text
    with db.read() as s:
        message = s.get(Message, dead)
        assert message is not None and message.status == "queued" and message.attempts == 0
        events = s.scalars(select(MessageEvent.status).where(
            MessageEvent.message_id == dead)).all()
    assert events == ["requeued"]


# ---------------------------------------------------------------- callbacks


@pytest.fixture
def tasks(db: Database, world: World, clock: FixedClock) -> dict[str, uuid.UUID]:
    """Tasks of store A made on day D: due D, D+2 and D+5; the clock then moves to D+2, so
    they are overdue, due today and later. One of store B, due D+2."""
    with db.write() as s:
        today = local_today(clock, "Asia/Shanghai")
        ids = {}
        for key, days in (("overdue", 0), ("today", 2), ("later", 5)):
            member = make_member(s, clock, world.store_a, name=f"Member {key}")
            ids[key] = feedback.create_callback(s, clock=clock, actor=None, member_id=member.id,
                                                due_on=today + timedelta(days=days)).id
        member_b = make_member(s, clock, world.store_b, name="Member of B")
        ids["b"] = feedback.create_callback(s, clock=clock, actor=None, member_id=member_b.id,
                                            due_on=today + timedelta(days=2)).id
    clock.advance(timedelta(days=2))
    return ids


def test_callback_board_puts_tasks_in_the_right_columns(
    client: TestClient, world: World, tasks: dict[str, uuid.UUID]
) -> None:
    web_login(client, "cashier-a")  # staff of the store use the board
    page = client.get("/care/callbacks").text
    assert _column_tasks(page, "overdue") == {str(tasks["overdue"])}
    assert _column_tasks(page, "today") == {str(tasks["today"])}
    assert _column_tasks(page, "later") == {str(tasks["later"])}
    assert _column_tasks(page, "done") == set()
    assert str(tasks["b"]) not in page and "Member of B" not in page
    assert "139****" not in page and "138****" in page  # a cashier sees masked phones
    web_login(client, "manager-b")
    page = client.get("/care/callbacks").text
    assert _column_tasks(page, "today") == {str(tasks["b"])}
    assert str(tasks["overdue"]) not in page


def test_logging_a_call_settles_or_reschedules_the_task(
    client: TestClient, world: World, db: Database, tasks: dict[str, uuid.UUID],
    clock: FixedClock
) -> None:
    csrf = web_login(client, "cashier-a")
    r = client.post(f"/care/callbacks/{tasks['today']}/call", follow_redirects=False,
                    data={"csrf_token": csrf, "outcome": "will_return", "note": "next week"})
    assert r.status_code == 303
    tomorrow = local_today(clock, "Asia/Shanghai") + timedelta(days=1)
    r = client.post(f"/care/callbacks/{tasks['overdue']}/call", follow_redirects=False,
                    data={"csrf_token": csrf, "outcome": "no_answer",
                          "reschedule_on": tomorrow.isoformat()})
    assert r.status_code == 303
    page = client.get("/care/callbacks").text
    assert _column_tasks(page, "done") == {str(tasks["today"])}
    assert _column_tasks(page, "overdue") == set()
    assert _column_tasks(page, "later") == {str(tasks["overdue"]), str(tasks["later"])}
    assert "Will come back" in _section(page, "data-column", "done")
    with db.read() as s:
        done = s.get(CallbackTask, tasks["today"])
        moved = s.get(CallbackTask, tasks["overdue"])
        assert done is not None and moved is not None
        assert (done.status, done.outcome) == (CallbackStatus.DONE.value, "will_return")
        assert (moved.status, moved.due_on, moved.attempts) == ("open", tomorrow, 1)
    # a reschedule of a call that was answered is refused, naming the field; nothing changes
    r = client.post(f"/care/callbacks/{tasks['later']}/call", data={
        "csrf_token": csrf, "outcome": "reached", "reschedule_on": tomorrow.isoformat()})
    assert r.status_code == 422 and "Only a call nobody answered can be rescheduled" in r.text
    r = client.post(f"/care/callbacks/{tasks['later']}/call",
                    data={"csrf_token": csrf, "outcome": "shouted"})
    assert r.status_code == 422 and "Choose one of the options" in r.text
    with db.read() as s:
        later = s.get(CallbackTask, tasks["later"])
        assert later is not None and later.status == "open" and later.attempts == 0
    assert client.post(f"/care/callbacks/{tasks['b']}/call", data={
        "csrf_token": csrf, "outcome": "reached"}).status_code == 403


def test_a_manager_assigns_a_task_and_a_cashier_cannot(
    client: TestClient, world: World, db: Database, tasks: dict[str, uuid.UUID]
) -> None:
    csrf = web_login(client, "cashier-a")
    assert client.post(f"/care/callbacks/{tasks['later']}/assign", data={
        "csrf_token": csrf, "assignee_id": str(world.cashier_a.id)}).status_code == 403
    csrf = web_login(client, "manager-a")
    r = client.post(f"/care/callbacks/{tasks['later']}/assign", follow_redirects=False,
                    data={"csrf_token": csrf, "assignee_id": str(world.cashier_a.id)})
    assert r.status_code == 303
    r = client.post(f"/care/callbacks/{tasks['today']}/assign",
                    data={"csrf_token": csrf, "assignee_id": str(world.manager_b.id)})
    assert r.status_code == 422 and "The assignee does not work in this store" in r.text
    with db.read() as s:
        task = s.get(CallbackTask, tasks["later"])
        other = s.get(CallbackTask, tasks["today"])
        assert task is not None and task.assignee_id == world.cashier_a.id
        assert other is not None and other.assignee_id is None
    web_login(client, "cashier-a")
    mine = client.get("/care/callbacks", params={"mine": "1"}).text
    assert _column_tasks(mine, "later") == {str(tasks["later"])}
    assert _column_tasks(mine, "today") == set()


# ---------------------------------------------------------------- complaints


def _open(db: Database, clock: FixedClock, store: Store, severity: Severity,
          description: str = "Cold coffee") -> uuid.UUID:
    with db.write() as s:
        return feedback.open_complaint(s, clock=clock, actor=None, data=ComplaintCreate(
            store_id=store.id, channel=ComplaintChannel.IN_STORE,
            category=ComplaintCategory.PRODUCT, severity=severity,
            description=description)).id


def test_complaint_sla_badges_at_fixed_clock_times(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    critical = _open(db, clock, world.store_a, Severity.CRITICAL)  # 4 h to respond
    web_login(client, "cashier-a")

    def state() -> str:
        page = client.get("/care/complaints").text
        match = re.search(rf'data-complaint="{critical}" data-sla="(\w+)"', page)
        assert match
        return match.group(1)

    clock.advance(timedelta(hours=2, minutes=59))
    assert state() == "ok"
    clock.advance(timedelta(minutes=1))  # 3 h: the last quarter of the 4 h window
    assert state() == "due_soon"
    page = client.get("/care/complaints").text
    assert _count(page, "data-sla-count", "due_soon") == 1
    clock.advance(timedelta(hours=1))  # exactly 4 h: still due, not yet late
    assert state() == "due_soon"
    clock.advance(timedelta(seconds=1))
    assert state() == "breached"
    page = client.get("/care/complaints").text
    assert _count(page, "data-sla-count", "breached") == 1
    assert _count(page, "data-sla-count", "ok") == 0
    filtered = client.get("/care/complaints", params={"sla": "ok"}).text
    assert str(critical) not in filtered
    detail = client.get(f"/care/complaints/{critical}").text
    assert 'data-sla="breached"' in detail


def test_a_manager_responds_and_resolves_a_complaint(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    complaint = _open(db, clock, world.store_a, Severity.NORMAL)
    csrf = web_login(client, "cashier-a")
    assert client.post(f"/care/complaints/{complaint}/status", data={
        "csrf_token": csrf, "to": "in_progress"}).status_code == 403
    csrf = web_login(client, "manager-b")
    assert client.get(f"/care/complaints/{complaint}").status_code == 403
    assert str(complaint) not in client.get("/care/complaints").text
    csrf = web_login(client, "manager-a")
    clock.advance(timedelta(hours=1))
    r = client.post(f"/care/complaints/{complaint}/status", follow_redirects=False,
                    data={"csrf_token": csrf, "to": "in_progress", "note": "Called them"})
    assert r.status_code == 303
    r = client.post(f"/care/complaints/{complaint}/resolve",
                    data={"csrf_token": csrf, "resolution": "  "})
    assert r.status_code == 422 and 'id="e-resolution"' in r.text
    r = client.post(f"/care/complaints/{complaint}/resolve", follow_redirects=False,
                    data={"csrf_token": csrf, "resolution": "Replaced the coffee"})
    assert r.status_code == 303
    page = client.get(f"/care/complaints/{complaint}").text
    assert "Replaced the coffee" in page and "Called them" in page
    assert 'data-sla="ok"' in page
    with db.read() as s:
        row = s.get(Complaint, complaint)
        assert row is not None and row.status == ComplaintStatus.RESOLVED.value
        assert row.first_response_at is not None and row.resolved_at == clock.now()


def test_staff_log_a_complaint_for_a_member(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        card_no = make_member(s, clock, world.store_a, name="Zhao Min").card_no
    csrf = web_login(client, "cashier-a")
    r = client.post("/care/complaints", data={
        "csrf_token": csrf, "card_no": "nope", "channel": "phone", "category": "staff",
        "severity": "high", "description": "Rude"})
    assert r.status_code == 422 and "No member has this card number" in r.text
    r = client.post("/care/complaints", data={
        "csrf_token": csrf, "card_no": card_no, "channel": "phone", "category": "staff",
        "severity": "high", "description": ""})
    assert r.status_code == 422 and 'id="e-description"' in r.text
    r = client.post("/care/complaints", follow_redirects=False, data={
        "csrf_token": csrf, "card_no": card_no, "channel": "phone", "category": "staff",
        "severity": "high", "description": "Rude at the till"})
    assert r.status_code == 303
    with db.read() as s:
        row = s.scalar(select(Complaint))
        assert row is not None and row.store_id == world.store_a.id
        assert row.severity == "high" and row.member_id is not None
    assert "Zhao Min" in client.get(r.headers["location"]).text


# ---------------------------------------------------------------- surveys


def _answers(db: Database, clock: FixedClock, store: Store,
             answers: list[tuple[int | None, int | None, str]]) -> None:
    with db.write() as s:
        for csat, nps, comment in answers:
            member = make_member(s, clock, store)
            invitation = feedback.invite(s, clock=clock, member_id=member.id,
                                         occasion=SurveyOccasion.SALE,
                                         source_ref=uuid.uuid4().hex, store_id=store.id)
            assert invitation is not None
            feedback.answer(s, clock=clock, token=invitation.token, csat=csat, nps=nps,
                            comment=comment)


def test_survey_figures_equal_hand_computed_csat_and_nps(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=-30))  # October 2026 (store time)
    _answers(db, clock, world.store_a, [(5, 10, "Lovely"), (4, 9, ""), (3, 8, ""),
                                        (2, 3, "Too slow"), (5, 6, "")])
    clock.advance(timedelta(days=30))  # November
    _answers(db, clock, world.store_a, [(5, 10, "Best latte in town")])
    _answers(db, clock, world.store_b, [(1, 0, "Store B was closed")])
    # A: promoters 3, passives 1, detractors 2 of 6 -> NPS 100 * (3 - 2) / 6 = 16.7;
    # CSAT: 4 of 6 answered 4 or 5 -> 66.7 %; mean (5+4+3+2+5+5) / 6 = 4.00
    web_login(client, "manager-a")
    page = client.get("/care/surveys").text
    assert ">16.7<" in _section(page, "data-figure", "nps")
    assert ">66.7%<" in _section(page, "data-figure", "csat")
    assert ">4.00<" in _section(page, "data-figure", "csat_mean")
    assert ">6<" in _section(page, "data-figure", "responses")
    assert "3 / 1 / 2" in _section(page, "data-figure", "mix")
    trend = json.loads(re.search(r'id="nps-trend-data">(.*?)</script>', page, re.S)
                       .group(1))  # type: ignore[union-attr]
    months = trend["xAxis"]["data"]
    assert months == month_keys(date(2026, 11, 23), 12) and months[-2:] == ["2026-10",
                                                                            "2026-11"]
    assert trend["series"][0]["data"][-2:] == [0.0, 100.0]  # October: 2 - 2 of 5
    assert trend["series"][1]["data"][-2:] == [60.0, 100.0]
    assert trend["series"][0]["data"][0] is None  # no answers is a gap, not a zero
    assert "Best latte in town" in page and "Too slow" in page
    assert "Store B was closed" not in page  # another store's comment
    assert page.index("Best latte in town") < page.index("Too slow")  # newest first
    three = client.get("/care/surveys", params={"months": "3"}).text
    assert ">16.7<" in _section(three, "data-figure", "nps")
    web_login(client, "owner")
    everything = client.get("/care/surveys").text
    # owner: 7 answers, promoters 3, detractors 3 -> NPS 0.0
    assert ">0.0<" in _section(everything, "data-figure", "nps")
    assert "Store B was closed" in everything
    assert client.get("/care/surveys", params={"months": "7"}).status_code == 422


# ---------------------------------------------------------------- roles and languages


def test_cashier_is_refused_where_the_services_refuse(client: TestClient, world: World) -> None:
    web_login(client, "cashier-a")
    for path in ("/care/rules", "/care/outbox", "/care/surveys"):
        assert client.get(path).status_code == 403, path
    for path in ("/care/callbacks", "/care/complaints"):
        assert client.get(path).status_code == 200, path
    r = client.get("/care", follow_redirects=False)
    assert r.headers["location"] == "/care/callbacks"
    home = client.get("/").text
    assert 'href="/care"' not in home  # the section is in a manager's menu
    web_login(client, "manager-a")
    assert 'href="/care"' in client.get("/").text
    assert client.get("/care", follow_redirects=False).headers["location"] == "/care/rules"


def test_care_pages_in_chinese(client: TestClient, world: World, db: Database,
                               clock: FixedClock) -> None:
    _open(db, clock, world.store_a, Severity.CRITICAL)
    web_login(client, "owner")
    client.cookies.set("lang", "zh_CN")
    rules = client.get("/care/rules").text
    assert "关怀规则" in rules and "生日" in rules
    card = _section(rules, "data-rule", "birthday")
    assert card.index('data-preview-language="zh_CN"') < card.index('data-preview-language="en"')
    assert "李娜" in card
    complaints = client.get("/care/complaints").text
    assert "投诉" in complaints and "按时" in complaints
    assert "发件箱" in client.get("/care/outbox").text
    assert "回访" in client.get("/care/callbacks").text
    assert "净推荐值" in client.get("/care/surveys").text
    client.cookies.set("lang", "en")
    assert "Care rules" in client.get("/care/rules").text


def test_unknown_rule_and_task_are_404(client: TestClient, world: World) -> None:
    csrf = web_login(client, "owner")
    assert client.post("/care/rules/nope/enabled", data={
        "csrf_token": csrf, "store": "brand", "enabled": "1"}).status_code == 404
    assert client.post(f"/care/callbacks/{uuid.uuid4()}/call", data={
        "csrf_token": csrf, "outcome": "reached"}).status_code == 404
    assert client.get(f"/care/complaints/{uuid.uuid4()}").status_code == 404

