"""``patron worker``: turn outbox events into messages, deliver messages, run the schedules.

Three loops share one process (and any number of processes share one PostgreSQL
database):

1. **Outbox.** Unprocessed events are read in ``seq`` order (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so two workers never take the same event). Each event's handlers run in a
   savepoint of one transaction that also marks the event processed: the messages,
   occasions and coupons a handler creates commit together with "this event is done", so a
   crash can neither lose the event nor act on it twice.
2. **Delivery.** Due messages are leased (``sending``, lease 90 s) in one short
   transaction, sent outside any transaction, and each result is booked in its own
   transaction right after the send, so a kill loses at most the booking of the one message
   in flight (which is then re-sent with the same reference; see messaging.service).
3. **Schedules.** Daily jobs fire at a cron time in each store's zone (care) or the
   brand's (points, tiers, memberships). A ``scheduled_runs`` row, unique on job, scope and
   local date, is claimed before a run, so a restart or a second worker never runs a day
   twice; a run left ``running`` by a dead worker is retried after an hour (the jobs are
   idempotent per occasion).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.core.clock import Clock
from patron.core.db import Database
from patron.core.events import OutboxEvent
from patron.core.settings import Settings
from patron.jobs.models import ScheduledRun
from patron.members.models import Store
from patron.messaging import service as messaging
from patron.messaging.channels.base import ChannelKind, Message, SendResult
from patron.messaging.channels.factory import ChannelNotConfigured, ChannelSet
from patron.messaging.templates import TemplateRenderer

log = logging.getLogger("patron.worker")

MAX_EVENT_ATTEMPTS = 5
STALE_RUN = timedelta(hours=1)


@dataclass
class WorkerContext:
    """What handlers and jobs need besides a session: time, settings, rendering, channels."""

    db: Database
    clock: Clock
    settings: Settings
    renderer: TemplateRenderer
    channels: ChannelSet
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def channel_kinds(self) -> set[str]:
        return {kind.value for kind in ChannelKind if kind in self.channels}


EventHandler = Callable[[Session, WorkerContext, OutboxEvent], None]
Job = Callable[[Session, WorkerContext, Store | None, date], dict[str, int]]


@dataclass(frozen=True)
class Schedule:
    """A daily (or any cron) job; ``per_store`` jobs run in each store's own zone."""

    name: str
    cron: str
    job: Job
    per_store: bool


# ---------------------------------------------------------------- 1. outbox


def process_outbox(ctx: WorkerContext, handlers: Callable[[str], list[EventHandler]],
                   *, limit: int = 200) -> int:
    """Run the handlers of up to ``limit`` pending events; returns how many were taken."""
    with ctx.db.write() as session:
        stmt = (select(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
                .order_by(OutboxEvent.seq).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        events = list(session.scalars(stmt))
        for event in events:
            try:
                with session.begin_nested():
                    for handler in handlers(event.type):
                        handler(session, ctx, event)
            except Exception as exc:  # one bad event must not stop the others
                event.attempts += 1
                event.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("event %s (%s) failed, attempt %d: %s", event.seq, event.type,
                            event.attempts, event.last_error)
                log.debug("%s", traceback.format_exc())
                if event.attempts >= MAX_EVENT_ATTEMPTS:
                    event.processed_at = ctx.clock.now()  # given up; last_error says why
                continue
            event.processed_at = ctx.clock.now()
            event.last_error = None
    return len(events)


# ---------------------------------------------------------------- 2. delivery


def _channel_message(claimed: messaging.Claimed) -> Message:
    payload = claimed.payload
    kind = ChannelKind(claimed.channel)
    return Message(
        kind=kind, recipient=claimed.recipient, body=claimed.body, subject=claimed.subject,
        html_body=claimed.html, dedupe_key=str(claimed.id),
        recipient_name=payload.get("recipient_name"),
        unsubscribe_url=payload.get("unsubscribe_url"),
        template=claimed.template,
        template_params={str(k): str(v) for k, v in (payload.get("sms_params") or {}).items()},
        event=payload.get("event") if kind is ChannelKind.WEBHOOK else None,
        metadata={"attempt": str(claimed.attempt),
                  **({"endpoint_id": claimed.endpoint_id.hex} if claimed.endpoint_id else {})})


def send_one(ctx: WorkerContext, claimed: messaging.Claimed) -> SendResult:
    """Hand one leased message to its channel; never raises (a crash of the channel code is a
    retryable failure, so the message is tried again and ends dead-lettered if it persists)."""
    try:
        channel = ctx.channels.get(ChannelKind(claimed.channel))
        return channel.send(_channel_message(claimed))
    except ChannelNotConfigured as exc:
        return SendResult.permanent("none", str(exc), error_code="not_configured")
    except Exception as exc:
        return SendResult.retry("patron", f"{type(exc).__name__}: {exc}")


def deliver_due(ctx: WorkerContext, *, limit: int = 50) -> int:
    """Lease, send and book up to ``limit`` due messages; returns how many were sent or tried."""
    lease = timedelta(seconds=ctx.settings.worker_lease_seconds)
    with ctx.db.write() as session:
        claimed = messaging.claim_due(session, clock=ctx.clock, limit=limit,
                                      channels=ctx.channel_kinds, lease=lease)
    for item in claimed:
        with ctx.db.write() as session:  # the batch took longer than the lease: skip the
            if not messaging.still_mine(session, clock=ctx.clock, message_id=item.id,
                                        attempt=item.attempt, lease=lease):
                continue  # ones another worker has taken over since
        result = send_one(ctx, item)
        with ctx.db.write() as session:
            messaging.record_result(session, clock=ctx.clock, message_id=item.id, result=result)
    return len(claimed)


# ---------------------------------------------------------------- 3. schedules


def _due_date(cron: str, now: datetime, tz: str) -> date | None:
    """The local date of the latest firing of ``cron`` at or before ``now`` in ``tz``, if it
    fired today (local); a job missed for days runs for today only."""
    local_now = now.astimezone(ZoneInfo(tz))
    fired = croniter(cron, local_now).get_prev(datetime)
    return fired.date() if fired.date() == local_now.date() else None


def _claim_run(ctx: WorkerContext, job: str, scope: str, day: date) -> bool:
    now = ctx.clock.now()
    with ctx.db.write() as session:
        run = session.scalar(select(ScheduledRun).where(
            ScheduledRun.job == job, ScheduledRun.scope == scope, ScheduledRun.local_date == day))
        if run is None:
            try:
                with session.begin_nested():
                    session.add(ScheduledRun(job=job, scope=scope, local_date=day,
                                             started_at=now, status="running"))
            except IntegrityError:
                return False  # another worker took it this instant
            return True
        if run.status == "running" and run.started_at < now - STALE_RUN:
            run.started_at, run.detail = now, "retried after a stale run"
            return True
        return False


def _finish_run(ctx: WorkerContext, job: str, scope: str, day: date, status: str,
                detail: str) -> None:
    with ctx.db.write() as session:
        run = session.scalar(select(ScheduledRun).where(
            ScheduledRun.job == job, ScheduledRun.scope == scope, ScheduledRun.local_date == day))
        if run is not None:
            run.status, run.detail, run.finished_at = status, detail[:2000], ctx.clock.now()


def run_schedules(ctx: WorkerContext, schedules: list[Schedule]) -> list[str]:
    """Run every schedule that is due and not yet run for its scope's local day."""
    ran: list[str] = []
    now = ctx.clock.now()
    with ctx.db.read() as session:
        stores = [(s.id, s.timezone) for s in session.scalars(
            select(Store).where(Store.active.is_(True)))]
    for schedule in schedules:
        scopes: list[tuple[str, uuid.UUID | None, str]] = (
            [(str(sid), sid, tz) for sid, tz in stores] if schedule.per_store
            else [("brand", None, ctx.settings.default_timezone)])
        for scope, store_id, tz in scopes:
            day = _due_date(schedule.cron, now, tz)
            if day is None or not _claim_run(ctx, schedule.name, scope, day):
                continue
            try:
                with ctx.db.write() as session:
                    store = session.get(Store, store_id) if store_id else None
                    counts = schedule.job(session, ctx, store, day)
            except Exception as exc:
                log.exception("scheduled job %s for %s failed", schedule.name, scope)
                _finish_run(ctx, schedule.name, scope, day, "failed",
                            f"{type(exc).__name__}: {exc}")
                continue
            _finish_run(ctx, schedule.name, scope, day, "done", json.dumps(counts))
            ran.append(f"{schedule.name}:{scope}:{day}")
    return ran


# ---------------------------------------------------------------- the loop


@dataclass
class Worker:
    """The three loops in one thread; ``run_once`` for tests and ``run`` for the CLI."""

    ctx: WorkerContext
    handlers: Callable[[str], list[EventHandler]]
    schedules: list[Schedule]
    poll_s: float = 1.0
    schedule_every_s: float = 30.0
    _last_schedule: float = field(default=-1e9, init=False)

    def run_once(self, *, schedules: bool = True) -> dict[str, Any]:
        """One pass: events until none are left, messages due now, then the schedules."""
        events = 0
        while (n := process_outbox(self.ctx, self.handlers)) > 0:
            events += n
        sent = 0
        while (n := deliver_due(self.ctx)) > 0:
            sent += n
        ran = run_schedules(self.ctx, self.schedules) if schedules else []
        if ran:  # the jobs wrote events (greetings): turn them into messages now
            while (n := process_outbox(self.ctx, self.handlers)) > 0:
                events += n
            while (n := deliver_due(self.ctx)) > 0:
                sent += n
        return {"events": events, "messages": sent, "schedules": ran}

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; sleeps ``poll_s`` when there was nothing to do."""
        log.info("worker %s started", self.ctx.worker_id)
        while not stop.is_set():
            busy = False
            try:
                busy = process_outbox(self.ctx, self.handlers) > 0
                busy = deliver_due(self.ctx) > 0 or busy
                if time.monotonic() - self._last_schedule >= self.schedule_every_s:
                    self._last_schedule = time.monotonic()
                    busy = bool(run_schedules(self.ctx, self.schedules)) or busy
            except Exception:  # a database restart, say: wait and go on
                log.exception("worker pass failed; retrying")
                stop.wait(min(30.0, self.poll_s * 5))
                continue
            if not busy:
                stop.wait(self.poll_s)
        log.info("worker %s stopped", self.ctx.worker_id)
