"""Care rules that listen to the feedback domain: satisfaction surveys after a sale, and a
follow-up (message and survey) once a complaint is resolved.

The survey itself (its token, once-per-N-days rule, answers) belongs to feedback; care only
decides when to invite and says so to the member through messaging.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from patron.care import service as care
from patron.core.events import OutboxEvent
from patron.feedback import service as feedback
from patron.feedback.enums import SurveyOccasion
from patron.jobs.worker import EventHandler, WorkerContext
from patron.members.models import Store
from patron.messaging.templates import ComplaintView


def _survey_link(ctx: WorkerContext, token: str) -> str:
    return f"{ctx.settings.public_url.rstrip('/')}/s/{token}"


def invite_after_sale(session: Session, ctx: WorkerContext, event: OutboxEvent) -> None:
    """At most one post-purchase survey per member every ``every_days`` days."""
    member = care._active_member(session, event.payload.get("member_id"))
    if member is None or event.store_id is None:
        return
    config = care.rule_config(session, "survey", event.store_id)
    if not config["enabled"] or not config.get("after_sale"):
        return
    feedback.invite(session, clock=ctx.clock, member_id=member.id,
                    occasion=SurveyOccasion.SALE, source_ref=str(event.payload["sale_id"]),
                    store_id=event.store_id, every_n_days=int(config["every_days"]))


def send_invitation(session: Session, ctx: WorkerContext, event: OutboxEvent) -> None:
    """Send the survey link of a new invitation (after a sale or a resolved complaint)."""
    member = care._active_member(session, event.payload.get("member_id"))
    if member is None:
        return
    store = session.get(Store, uuid.UUID(str(event.payload["store_id"])))
    config = care.rule_config(session, "survey", store.id if store else None)
    item = care._occasion(session, "survey", member, store,
                          str(event.payload["invitation_id"]), "survey", {}, config,
                          survey_link=_survey_link(ctx, str(event.payload["token"])))
    if item is not None:
        item.coupon_template_id = None
        care.serve(session, ctx, item)


def after_complaint(session: Session, ctx: WorkerContext, event: OutboxEvent) -> None:
    """Tell the member their complaint is resolved, and ask how it was handled."""
    member = care._active_member(session, event.payload.get("member_id"))
    if member is None:
        return
    store = session.get(Store, uuid.UUID(str(event.payload["store_id"])))
    config = care.rule_config(session, "complaint_followup", store.id if store else None)
    if not config["enabled"]:
        return
    complaint_id = str(event.payload["complaint_id"])
    item = care._occasion(session, "complaint_followup", member, store, complaint_id,
                          "complaint_followup", {"complaint": ComplaintView(
                              reference=complaint_id[-8:].upper(),
                              summary=str(event.payload.get("category", "")))}, config)
    if item is not None:
        item.coupon_template_id = None
        care.serve(session, ctx, item)
    if config.get("survey"):
        feedback.invite(session, clock=ctx.clock, member_id=member.id,
                        occasion=SurveyOccasion.COMPLAINT, source_ref=complaint_id,
                        store_id=store.id if store else None, every_n_days=0)


HANDLERS: dict[str, EventHandler] = {
    "sale.completed": invite_after_sale,
    "survey.invited": send_invitation,
    "complaint.resolved": after_complaint,
}
