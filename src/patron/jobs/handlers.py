"""Which code runs for which outbox event, and which jobs run on which schedule.

This is the composition root of the worker (as core.registry is for the tables): domains
know nothing of the worker; the worker knows which of their functions to call.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.care import feedback_rules
from patron.care import service as care
from patron.core.events import OutboxEvent
from patron.jobs.worker import EventHandler, Schedule, WorkerContext
from patron.members.models import Store
from patron.messaging import service as messaging
from patron.messaging.models import WebhookEndpoint


def webhooks(session: Session, ctx: WorkerContext, event: OutboxEvent) -> None:
    """Fan an event out to every subscribed integrator endpoint as a signed webhook."""
    endpoints = list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.active.is_(True))))
    wanted = [e for e in endpoints if not e.event_types or event.type in e.event_types]
    if not wanted:
        return
    body = json.dumps({"id": str(event.id), "type": event.type,
                       "occurred_at": event.occurred_at.isoformat(),
                       "store_id": str(event.store_id) if event.store_id else None,
                       "data": event.payload}, ensure_ascii=False, sort_keys=True)
    messaging.enqueue(session, clock=ctx.clock, messages=[messaging.Outgoing(
        dedupe_key=f"webhook:{event.id.hex}:{endpoint.id.hex}", channel="webhook",
        purpose="transactional", template="webhook", language="en", recipient=endpoint.url,
        body=body, endpoint_id=endpoint.id, source_event_id=event.id,
        payload={"event": event.type}) for endpoint in wanted])


EVENT_HANDLERS: dict[str, list[EventHandler]] = {
    "sale.completed": [care.on_sale_completed],
    "tier.changed": [care.on_tier_changed],
    "points.expiring": [care.on_points_expiring],
    "membership.expiring": [care.on_membership_expiring],
}


for _event_type, _handler in feedback_rules.HANDLERS.items():  # surveys, complaint follow-ups
    EVENT_HANDLERS.setdefault(_event_type, []).append(_handler)


def handlers_for(event_type: str) -> list[EventHandler]:
    """The handlers of one event type; every event also goes to the webhooks."""
    return [*EVENT_HANDLERS.get(event_type, []), webhooks]


# ---------------------------------------------------------------- schedules


def _care_daily(session: Session, ctx: WorkerContext, store: Store | None, day: date
                ) -> dict[str, int]:
    assert store is not None
    return care.run_daily_for_store(session, ctx, store, day)


def _loyalty_daily(session: Session, ctx: WorkerContext, _store: Store | None, _day: date
                   ) -> dict[str, int]:
    from patron.jobs.daily import run_all

    return run_all(session, ctx.clock)


def _campaigns_daily(session: Session, ctx: WorkerContext, _store: Store | None, day: date
                     ) -> dict[str, int]:
    from patron.campaigns import service as campaigns

    return campaigns.run_due(session, ctx, today=day, checkpoint=session.commit)


def _analytics_nightly(session: Session, ctx: WorkerContext, _store: Store | None, day: date
                       ) -> dict[str, Any]:
    """Score every member as of yesterday (the brand's local day).

    The refresh commits in chunks through ``ctx.db`` itself; the worker's session is left
    untouched, so it holds no lock while the refresh writes.
    """
    from patron.analytics import service as analytics

    return analytics.nightly(ctx.db, ctx.clock, timezone=ctx.settings.default_timezone,
                             day=day, engine=ctx.settings.analytics_engine,
                             warehouse=ctx.settings.analytics_warehouse_path())


SCHEDULES: list[Schedule] = [
    # points, tiers, memberships, coupons and cards just after local midnight
    Schedule("loyalty.daily", "15 0 * * *", _loyalty_daily, per_store=False),
    # greetings and reminders in the morning of each store's own day
    Schedule("care.daily", "0 9 * * *", _care_daily, per_store=True),
    # scheduled campaigns of the day and weekly ones, queued just after midnight
    Schedule("campaigns.daily", "5 0 * * *", _campaigns_daily, per_store=False),
    # the analytics snapshot (scores, churn, CLV, cycles) once yesterday's sales are in;
    # before care.daily, so win-back and replenishment read this morning's scores
    Schedule("analytics.nightly", "30 2 * * *", _analytics_nightly, per_store=False),
]


def schedule_names() -> list[str]:
    return [s.name for s in SCHEDULES]


__all__: list[Any] = ["EVENT_HANDLERS", "SCHEDULES", "handlers_for", "webhooks"]
