"""Segments, campaigns with a holdout, their results, and the proven plays.

For managers and owners. Campaigns are brand-wide: an owner may target any segment; a
manager saves segments and runs campaigns only on segments limited (by a top-level
``home_store`` condition) to their own stores, and the live count and sample show a
manager only their stores' members. Rule problems come back as problem+json naming the
field the way the builder shows it (``rules.children.2.value``).

The builder's count and sample are reads sent as POST (they carry a draft rule tree):
they run in a read session, so they never take the database's write lock. Launching and
resuming commit after every batch of members, so a large campaign does not block the
tills while it is queued.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.campaigns import plays, segments
from patron.campaigns import service as campaigns
from patron.campaigns.models import Campaign, Segment
from patron.campaigns.schemas import (
    ArmCounts,
    CampaignCreate,
    CampaignMessage,
    CampaignRead,
    CampaignResults,
    CampaignUpdate,
    FieldRead,
    OfferSuggestion,
    PlayCampaignCreate,
    PlayRead,
    RulesIn,
    SegmentCount,
    SegmentCreate,
    SegmentRead,
    SegmentSample,
    SegmentUpdate,
    TestSendIn,
    TestSendRead,
)

router = APIRouter(tags=["campaigns"])


def _segment(s: Segment) -> SegmentRead:
    return SegmentRead(id=s.id, name=s.name, description=s.description, rules=s.rules,
                       store_ids=[uuid.UUID(v) for v in s.store_ids], created_by=s.created_by,
                       created_at=s.created_at, updated_at=s.updated_at,
                       archived=s.archived_at is not None)


def _campaigns(session: Session, rows: list[Campaign]) -> list[CampaignRead]:
    counts = campaigns.arm_counts(session, campaign_ids=[c.id for c in rows])
    return [CampaignRead.model_validate({
        "id": c.id, "name": c.name, "kind": c.kind, "segment_id": c.segment_id,
        "rules": c.rules, "store_ids": c.store_ids, "channel": c.channel,
        "messages": c.messages, "coupon_template_id": c.coupon_template_id,
        "schedule": c.schedule, "send_at": c.send_at, "weekday": c.weekday,
        "send_time": c.send_time, "holdout_pct": c.holdout_pct, "seed": c.seed,
        "attribution_days": c.attribution_days, "margin_pct": c.margin_pct,
        "sms_cost_minor": c.sms_cost_minor, "email_cost_minor": c.email_cost_minor,
        "status": c.status, "last_run_on": c.last_run_on, "created_by": c.created_by,
        "created_at": c.created_at, "updated_at": c.updated_at,
        "launched_at": c.launched_at, "paused_at": c.paused_at,
        "cancelled_at": c.cancelled_at, "assigned": ArmCounts(**counts.get(c.id, {}))})
        for c in rows]


# ---------------------------------------------------------------- segments


@router.get("/segments/fields", operation_id="segment_fields")
def segment_fields(principal: CurrentPrincipal) -> list[FieldRead]:
    """The fields a rule may use, with their JSON schema (for the rule builder)."""
    campaigns.require_staff(principal)
    return [FieldRead.model_validate(f) for f in segments.describe_fields()]


@router.post("/segments/count", operation_id="count_segment_draft")
def count_draft(ctx: Ctx, principal: CurrentPrincipal, body: RulesIn) -> SegmentCount:
    """How many active members a draft rule tree matches now."""
    with ctx.db.read() as session:
        return campaigns.count_members(session, clock=ctx.clock, actor=principal,
                                       rules=body.rules, tz=ctx.settings.default_timezone)


@router.post("/segments/sample", operation_id="sample_segment_draft")
def sample_draft(ctx: Ctx, principal: CurrentPrincipal, body: RulesIn) -> SegmentSample:
    """The first 20 members a draft rule tree matches (phones masked for non-owners)."""
    with ctx.db.read() as session:
        return campaigns.sample_members(session, clock=ctx.clock, actor=principal,
                                        rules=body.rules, tz=ctx.settings.default_timezone)


@router.get("/segments", operation_id="list_segments")
def list_segments(session: DbSession, principal: CurrentPrincipal,
                  include_archived: bool = False) -> list[SegmentRead]:
    return [_segment(s) for s in campaigns.list_segments(session, actor=principal,
                                                         include_archived=include_archived)]


@router.post("/segments", status_code=status.HTTP_201_CREATED, operation_id="create_segment")
def create_segment(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   body: SegmentCreate) -> SegmentRead:
    segment = campaigns.create_segment(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return _segment(segment)


@router.get("/segments/{segment_id}", operation_id="get_segment")
def get_segment(session: DbSession, principal: CurrentPrincipal,
                segment_id: uuid.UUID) -> SegmentRead:
    return _segment(campaigns.get_segment(session, actor=principal, segment_id=segment_id))


@router.patch("/segments/{segment_id}", operation_id="update_segment")
def update_segment(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   segment_id: uuid.UUID, body: SegmentUpdate) -> SegmentRead:
    segment = campaigns.update_segment(session, clock=ctx.clock, actor=principal,
                                       segment_id=segment_id, data=body)
    session.commit()
    return _segment(segment)


@router.delete("/segments/{segment_id}", operation_id="archive_segment")
def archive_segment(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    segment_id: uuid.UUID) -> SegmentRead:
    """Archive (hide) a segment; campaigns that used it keep their copy of its rules."""
    segment = campaigns.archive_segment(session, clock=ctx.clock, actor=principal,
                                        segment_id=segment_id)
    session.commit()
    return _segment(segment)


@router.get("/segments/{segment_id}/count", operation_id="count_segment")
def count_segment(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  segment_id: uuid.UUID) -> SegmentCount:
    segment = campaigns.get_segment(session, actor=principal, segment_id=segment_id)
    return campaigns.count_members(session, clock=ctx.clock, actor=principal,
                                   rules=segment.rules, tz=ctx.settings.default_timezone)


@router.get("/segments/{segment_id}/sample", operation_id="sample_segment")
def sample_segment(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   segment_id: uuid.UUID) -> SegmentSample:
    segment = campaigns.get_segment(session, actor=principal, segment_id=segment_id)
    return campaigns.sample_members(session, clock=ctx.clock, actor=principal,
                                    rules=segment.rules, tz=ctx.settings.default_timezone)


# ---------------------------------------------------------------- campaigns


@router.get("/campaigns", operation_id="list_campaigns")
def list_campaigns(session: DbSession, principal: CurrentPrincipal,
                   status_: Annotated[str | None, Query(alias="status")] = None
                   ) -> list[CampaignRead]:
    return _campaigns(session, campaigns.list_campaigns(session, actor=principal,
                                                        status=status_))


@router.post("/campaigns", status_code=status.HTTP_201_CREATED, operation_id="create_campaign")
def create_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    body: CampaignCreate) -> CampaignRead:
    """A draft campaign (launch it with POST /campaigns/{id}/launch)."""
    sending = campaigns.send_context(ctx.settings, ctx.clock)
    campaign = campaigns.create_campaign(session, clock=ctx.clock, actor=principal, data=body,
                                         renderer=sending.renderer)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.get("/campaigns/{campaign_id}", operation_id="get_campaign")
def get_campaign(session: DbSession, principal: CurrentPrincipal,
                 campaign_id: uuid.UUID) -> CampaignRead:
    return _campaigns(session, [campaigns.get_campaign(session, actor=principal,
                                                       campaign_id=campaign_id)])[0]


@router.patch("/campaigns/{campaign_id}", operation_id="update_campaign")
def update_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    campaign_id: uuid.UUID, body: CampaignUpdate) -> CampaignRead:
    """Change a draft."""
    sending = campaigns.send_context(ctx.settings, ctx.clock)
    campaign = campaigns.update_campaign(session, clock=ctx.clock, actor=principal,
                                         campaign_id=campaign_id, data=body,
                                         renderer=sending.renderer)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.post("/campaigns/{campaign_id}/launch", operation_id="launch_campaign")
def launch_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    campaign_id: uuid.UUID) -> CampaignRead:
    """Send now, schedule, or start recurring, as the campaign's schedule says."""
    campaign = campaigns.launch(session, campaigns.send_context(ctx.settings, ctx.clock),
                                actor=principal, campaign_id=campaign_id,
                                checkpoint=session.commit)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.post("/campaigns/{campaign_id}/pause", operation_id="pause_campaign")
def pause_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   campaign_id: uuid.UUID) -> CampaignRead:
    """Stop sending; messages still queued are suppressed (``campaign_paused``)."""
    campaign = campaigns.pause(session, clock=ctx.clock, actor=principal,
                               campaign_id=campaign_id)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.post("/campaigns/{campaign_id}/resume", operation_id="resume_campaign")
def resume_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    campaign_id: uuid.UUID) -> CampaignRead:
    """Carry on after a pause: paused members are queued again."""
    campaign = campaigns.resume(session, campaigns.send_context(ctx.settings, ctx.clock),
                                actor=principal, campaign_id=campaign_id,
                                checkpoint=session.commit)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.post("/campaigns/{campaign_id}/cancel", operation_id="cancel_campaign")
def cancel_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    campaign_id: uuid.UUID) -> CampaignRead:
    """Stop for good; messages still queued are suppressed (``campaign_cancelled``)."""
    campaign = campaigns.cancel(session, clock=ctx.clock, actor=principal,
                                campaign_id=campaign_id)
    session.commit()
    return _campaigns(session, [campaign])[0]


@router.post("/campaigns/{campaign_id}/test-send", status_code=status.HTTP_202_ACCEPTED,
             operation_id="test_send_campaign")
def test_send_campaign(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                       campaign_id: uuid.UUID, body: TestSendIn) -> TestSendRead:
    """Queue the message, with sample data, to a staff phone or e-mail (not counted)."""
    sent = campaigns.send_test(session, campaigns.send_context(ctx.settings, ctx.clock),
                               actor=principal, campaign_id=campaign_id, to=body.to,
                               language=body.language)
    session.commit()
    message_id = campaigns.message_id_of(session, dedupe_key=sent.dedupe_key)
    return TestSendRead.model_validate({
        "message_id": message_id, "channel": sent.channel, "recipient": sent.recipient,
        "body": sent.body, "subject": sent.subject})


@router.get("/campaigns/{campaign_id}/results", operation_id="campaign_results")
def campaign_results(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                     campaign_id: uuid.UUID) -> CampaignResults:
    """Treatment against holdout: conversion, revenue, uplift with 95 % intervals, where
    every member went, cost and ROI; "no measurable effect yet" when the interval
    includes zero."""
    return campaigns.results(session, clock=ctx.clock, actor=principal,
                             campaign_id=campaign_id, currency=ctx.settings.currency)


# ---------------------------------------------------------------- plays


def _play(p: plays.Play) -> PlayRead:
    return PlayRead(code=p.code, name=p.name, description=p.description, rules=p.rules,
                    messages={k: CampaignMessage.model_validate(v)
                              for k, v in p.messages.items()},
                    offer=OfferSuggestion(**vars(p.offer)) if p.offer else None,
                    schedule=p.schedule, weekday=p.weekday,
                    attribution_days=p.attribution_days, kind=p.kind)


@router.get("/campaign-plays", operation_id="list_campaign_plays")
def list_plays(principal: CurrentPrincipal) -> list[PlayRead]:
    """Proven plays: a segment, texts in English and Chinese, an offer suggestion."""
    campaigns.require_staff(principal)
    return [_play(p) for p in plays.PLAYS]


@router.post("/campaign-plays/{code}/campaigns", status_code=status.HTTP_201_CREATED,
             operation_id="create_campaign_from_play")
def create_from_play(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, code: str,
                     body: PlayCampaignCreate) -> CampaignRead:
    """A saved segment and a draft campaign from a play, ready to review and launch."""
    sending = campaigns.send_context(ctx.settings, ctx.clock)
    campaign = campaigns.create_from_play(session, clock=ctx.clock, actor=principal, code=code,
                                          data=body, renderer=sending.renderer)
    session.commit()
    return _campaigns(session, [campaign])[0]
