"""The worker end to end: a sale becomes exactly one receipt e-mail at a real SMTP server;
rolled-back sales send nothing; failing providers retry and end delivered or dead-lettered;
webhooks reach integrators signed; schedules run once per store and local day."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from patron.analytics.service import latest_run
from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.events import OutboxEvent
from patron.core.settings import Settings
from patron.jobs.models import ScheduledRun
from patron.jobs.worker import deliver_due, process_outbox
from patron.messaging import service as messaging
from patron.messaging.channels.base import ChannelKind, Message, SendResult
from patron.messaging.models import Message as MessageRow
from patron.messaging.models import MessageEvent, WebhookEndpoint
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product
from tests.support.worker import SmtpServer, make_worker

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def _sell(db: Database, clock: FixedClock, world: World, email: str | None = "li@example.com",
          *, sku: str = "TEA", qty: int = 2) -> tuple[str, str]:
    with db.write() as s:
        member = make_member(s, clock, world.store_a, email=email)
        from patron.catalog import queries

        if not queries.find_products(s, skus={sku}):
            make_product(s, sku=sku, price_minor=4_250)
        sale = sales.checkout(s, clock=clock, actor=auth.principal_for_user(world.cashier_a),
                              till=TILL, data=SaleCreate(
                                  member_id=member.id, lines=[LineIn(sku=sku, quantity=qty)],
                                  payments=PaymentsIn(card_minor=4_250 * qty)))
        return str(member.id), sale.receipt_no


def test_a_sale_sends_exactly_one_receipt_with_its_figures(
        db: Database, clock: FixedClock, settings: Settings, world: World, smtp: SmtpServer,
        tmp_path: Path) -> None:
    _, receipt_no = _sell(db, clock, world)
    worker = make_worker(db, clock, settings, smtp_port=smtp.port, sms_path=tmp_path / "sms")
    first = worker.run_once(schedules=False)
    again = worker.run_once(schedules=False)  # a re-run finds nothing left to do
    received = smtp.inbox.to("li@example.com")
    assert len(received) == 1, [m["Subject"] for m in smtp.inbox.messages]
    assert first["messages"] == 1 and again == {"events": 0, "messages": 0, "schedules": []}
    mail = received[0]
    text = next(p.get_payload(decode=True).decode() for p in mail.walk()
                if p.get_content_type() == "text/plain")
    assert receipt_no in text
    assert "85.00" in text  # 2 x 42.50
    assert mail["Message-ID"]
    with db.read() as s:
        row = s.scalar(select(MessageRow))
        assert row is not None and row.status == "sent" and row.template == "receipt"
        assert [e.status for e in messaging.history(s, message_id=row.id)] == ["sent"]


def test_a_rolled_back_sale_sends_nothing(db: Database, clock: FixedClock, settings: Settings,
                                          world: World, smtp: SmtpServer, tmp_path: Path) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a, email="gone@example.com")
        make_product(s, sku="TEA", price_minor=1000)
    def crashing_till() -> None:
        with db.write() as s:
            sales.checkout(s, clock=clock, actor=auth.principal_for_user(world.cashier_a),
                           till=TILL, data=SaleCreate(
                               member_id=member.id, lines=[LineIn(sku="TEA", quantity=1)],
                               payments=PaymentsIn(cash_minor=1000)))
            raise RuntimeError("the till crashed before commit")

    with pytest.raises(RuntimeError):
        crashing_till()
    worker = make_worker(db, clock, settings, smtp_port=smtp.port, sms_path=tmp_path / "sms")
    assert worker.run_once(schedules=False)["messages"] == 0
    assert smtp.inbox.messages == []


class Flaky:
    """An SMS channel failing like a real provider: 10 % 5xx, 5 % timeouts."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.delivered: list[str] = []

    @property
    def kind(self) -> ChannelKind:
        return ChannelKind.SMS

    @property
    def name(self) -> str:
        return "flaky"

    def send(self, message: Message) -> SendResult:
        roll = self.rng.random()
        if roll < 0.10:
            return SendResult.retry("flaky", "503 Service Unavailable", http_status=503)
        if roll < 0.15:
            return SendResult.retry("flaky", "timed out", error_code="timeout")
        self.delivered.append(message.dedupe_key)
        return SendResult.accepted("flaky", f"id-{message.dedupe_key}")

    def close(self) -> None:
        pass


def test_failing_provider_ends_with_every_message_delivered_or_dead(
        db: Database, clock: FixedClock, settings: Settings, world: World,
        tmp_path: Path) -> None:
    flaky = Flaky(seed=3)
    worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms",
                         extra={ChannelKind.SMS: flaky})
    with db.write() as s:
        people = [make_member(s, clock, world.store_a) for _ in range(60)]
        messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key=f"t:{m.id}", channel="sms", purpose="transactional", template="receipt",
            language="en", recipient=m.phone or "", body="hello", member_id=m.id,
            store_id=world.store_a.id) for m in people])
    for _ in range(200):  # time passes; every retry's backoff comes due
        deliver_due(worker.ctx, limit=500)
        clock.advance(timedelta(hours=7))
    with db.read() as s:
        statuses = dict(s.execute(select(MessageRow.status, func.count())
                                  .group_by(MessageRow.status)).all())
        retried = s.scalar(select(func.count()).select_from(MessageEvent)
                           .where(MessageEvent.status == "retry"))
    assert set(statuses) <= {"sent", "dead"} and sum(statuses.values()) == 60
    assert statuses.get("sent", 0) == len(set(flaky.delivered)) == len(flaky.delivered)
    assert retried and retried > 0  # failures happened and were retried


def test_retries_use_backoff_then_dead_letter_and_resend(
        db: Database, clock: FixedClock, settings: Settings, world: World,
        tmp_path: Path) -> None:
    class Down(Flaky):
        def send(self, message: Message) -> SendResult:
            return SendResult.retry("down", "502 Bad Gateway", http_status=502)

    worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms",
                         extra={ChannelKind.SMS: Down(0)})
    with db.write() as s:
        m = make_member(s, clock, world.store_a)
        [mid] = messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
            dedupe_key="down:1", channel="sms", purpose="transactional", template="receipt",
            language="en", recipient=m.phone or "", body="hi", member_id=m.id)])
    assert deliver_due(worker.ctx) == 1
    assert deliver_due(worker.ctx) == 0  # not due again until its backoff has passed
    for _ in range(20):
        clock.advance(timedelta(hours=7))
        deliver_due(worker.ctx)
    with db.write() as s:
        row = s.get(MessageRow, mid)
        assert row is not None and row.status == "dead" and row.attempts == 8
        assert [r.id for r in messaging.dead_letters(s)] == [mid]
        messaging.resend(s, clock=clock, actor=None, message_id=mid)
    worker.ctx.channels.channels[ChannelKind.SMS] = Flaky(seed=1)  # the provider is back
    for _ in range(5):
        deliver_due(worker.ctx)
        clock.advance(timedelta(hours=1))
    with db.read() as s:
        row = s.get(MessageRow, mid)
        assert row is not None and row.status == "sent"


def test_webhooks_are_signed_per_endpoint_and_sent_once(
        db: Database, clock: FixedClock, settings: Settings, world: World,
        tmp_path: Path) -> None:
    from patron.messaging.channels.webhooks import WebhookChannel, verify_signature
    from tests.messaging.stub import Reply, StubServer

    hook = StubServer(lambda request: Reply(200, "ok")).start()
    try:
        worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms")
        secrets = {}

        def secret_of(message: Message) -> str:
            return secrets[message.metadata["endpoint_id"]]

        worker.ctx.channels.channels[ChannelKind.WEBHOOK] = WebhookChannel(secret=secret_of,
                                                                           clock=clock)
        with db.write() as s:
            endpoint = WebhookEndpoint(url=hook.url + "/hooks", secret="whsec-test",
                                       event_types=["sale.completed"], created_at=clock.now())
            s.add(endpoint)
            s.flush()
            secrets[endpoint.id.hex] = "whsec-test"
        _sell(db, clock, world, email=None)
        worker.run_once(schedules=False)
        worker.run_once(schedules=False)
        assert len(hook.requests) == 1
        request = hook.requests[0]
        verify_signature("whsec-test", request.header("Patron-Signature") or "", request.body,
                         tolerance_s=10**9)
        assert b'"type": "sale.completed"' in request.body
    finally:
        hook.stop()


def test_outbox_handler_failure_is_retried_then_given_up(
        db: Database, clock: FixedClock, settings: Settings, tmp_path: Path) -> None:
    from patron.core.events import emit

    worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms")
    with db.write() as s:
        emit(s, clock=clock, type="boom", payload={})
        emit(s, clock=clock, type="fine", payload={})

    def handlers(event_type: str) -> list:  # type: ignore[type-arg]
        def explode(*_: object) -> None:
            raise ValueError("bad payload")
        return [explode] if event_type == "boom" else []

    for _ in range(5):
        process_outbox(worker.ctx, handlers)
    with db.read() as s:
        events = {e.type: (e.attempts, e.processed_at is not None, e.last_error)
                  for e in s.scalars(select(OutboxEvent))}
    assert events["fine"] == (0, True, None)
    assert events["boom"] == (5, True, "ValueError: bad payload")


def test_daily_schedules_run_once_per_store_and_local_day(
        db: Database, clock: FixedClock, settings: Settings, world: World,
        tmp_path: Path) -> None:
    from patron.jobs.worker import run_schedules

    worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms")
    clock.advance(timedelta(hours=-8, minutes=-55))  # 09:05 in Shanghai: care is due
    first = run_schedules(worker.ctx, worker.schedules)
    second = run_schedules(worker.ctx, worker.schedules)
    assert sorted(r.split(":")[0] for r in first) == [
        "analytics.nightly", "campaigns.daily", "care.daily", "care.daily", "loyalty.daily"]
    assert second == []
    with db.read() as s:
        runs = list(s.scalars(select(ScheduledRun)))
        statuses = {r.job: r.status for r in runs}
        nightly_day = next(r.local_date for r in runs if r.job == "analytics.nightly")
        snapshot = latest_run(s)
        assert snapshot is not None
        # the nightly analytics refresh ran through the worker and scored yesterday
        assert (snapshot.status, snapshot.as_of) == ("succeeded",
                                                     nightly_day - timedelta(days=1))
    assert set(statuses.values()) == {"done"}, statuses
