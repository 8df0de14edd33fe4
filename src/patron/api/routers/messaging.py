"""Messages, their delivery, replies and opt-outs; webhook endpoints; care rules.

Staff endpoints (owners and managers) show the queue and the dead letters and re-send them,
manage integrators' webhook endpoints (the signing secret is shown once, at creation) and
switch care rules. Provider endpoints take delivery reports and inbound SMS replies; they
are authenticated by the provider's signature (Twilio) or by a shared token in the URL
(Aliyun, the generic gateway), not by a staff session. The one-click unsubscribe endpoint
is authenticated by the signed token in the link itself.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import select

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.care import service as care
from patron.core.errors import NotFound, PermissionDenied, ValidationFailed
from patron.messaging import service as messaging
from patron.messaging.channels import aliyun, twilio
from patron.messaging.channels.base import DeliveryStatus
from patron.messaging.config import ChannelSettings
from patron.messaging.models import Message, WebhookEndpoint
from patron.messaging.templates import TEMPLATES, TemplateRenderer

router = APIRouter(tags=["messaging"])

Status = Literal["queued", "sending", "sent", "delivered", "failed", "dead", "suppressed"]


class MessageRead(BaseModel):
    id: uuid.UUID
    channel: str
    purpose: str
    template: str
    language: str
    member_id: uuid.UUID | None
    store_id: uuid.UUID | None
    recipient: str
    subject: str
    body: str
    segments: int | None
    status: str
    reason: str | None
    attempts: int
    not_before: datetime
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class MessageEventRead(BaseModel):
    at: datetime
    status: str
    detail: str


class MessageDetail(MessageRead):
    history: list[MessageEventRead]


def _mask(recipient: str, channel: str) -> str:
    if channel == "sms" and len(recipient) > 7:
        return recipient[:-8] + "****" + recipient[-4:]
    return recipient


def _read(m: Message, *, full: bool) -> MessageRead:
    return MessageRead(
        id=m.id, channel=m.channel, purpose=m.purpose, template=m.template, language=m.language,
        member_id=m.member_id, store_id=m.store_id,
        recipient=m.recipient if full else _mask(m.recipient, m.channel), subject=m.subject,
        body=m.body, segments=m.segments, status=m.status, reason=m.reason,
        attempts=m.attempts, not_before=m.not_before, created_at=m.created_at,
        sent_at=m.sent_at, delivered_at=m.delivered_at)


@router.get("/messages", operation_id="list_messages")
def list_messages(session: DbSession, principal: CurrentPrincipal,
                  status: Status | None = None, member_id: uuid.UUID | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[MessageRead]:
    """The newest messages, optionally by status or member (managers and owners)."""
    require_role(principal, Role.MANAGER)
    stmt = select(Message).order_by(Message.created_at.desc()).limit(limit)
    if status:
        stmt = stmt.where(Message.status == status)
    if member_id:
        stmt = stmt.where(Message.member_id == member_id)
    if principal.role is not Role.OWNER:
        stmt = stmt.where(Message.store_id.in_(sorted(principal.store_ids)))
    return [_read(m, full=principal.role is Role.OWNER) for m in session.scalars(stmt)]


@router.get("/messages/summary", operation_id="message_summary")
def message_summary(session: DbSession, principal: CurrentPrincipal) -> dict[str, int]:
    """How many messages are in each state (the outbox health at a glance)."""
    require_role(principal, Role.MANAGER)
    return messaging.status_counts(session)


def _message(session: DbSession, principal: CurrentPrincipal, message_id: uuid.UUID) -> Message:
    require_role(principal, Role.MANAGER)
    m = session.get(Message, message_id)
    if m is None:
        raise NotFound("No such message", "message_id")
    if principal.role is not Role.OWNER and (m.store_id is None
                                             or not principal.can_access_store(m.store_id)):
        raise PermissionDenied("This message belongs to a store you don't have access to")
    return m


@router.get("/messages/{message_id}", operation_id="get_message")
def get_message(session: DbSession, principal: CurrentPrincipal,
                message_id: uuid.UUID) -> MessageDetail:
    m = _message(session, principal, message_id)
    history = [MessageEventRead(at=e.at, status=e.status, detail=e.detail)
               for e in messaging.history(session, message_id=m.id)]
    return MessageDetail(**_read(m, full=principal.role is Role.OWNER).model_dump(),
                         history=history)


@router.post("/messages/{message_id}/resend", operation_id="resend_message")
def resend_message(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   message_id: uuid.UUID) -> MessageRead:
    """Put a dead-lettered or failed message back in the queue."""
    _message(session, principal, message_id)
    m = messaging.resend(session, clock=ctx.clock, actor=principal, message_id=message_id)
    session.commit()
    return _read(m, full=principal.role is Role.OWNER)


# ---------------------------------------------------------------- policy


#: A wall-clock time in each store's own zone, "21:00": no date, no offset (a JSON Schema
#: "time" would demand one).
LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                 examples=["21:00"])]


class PolicyRead(BaseModel):
    quiet_start: LocalTime
    quiet_end: LocalTime
    weekly_cap: int
    max_attempts: int
    log_retention_days: int

    @classmethod
    def of(cls, policy: Any) -> PolicyRead:
        return cls(quiet_start=policy.quiet_start.strftime("%H:%M"),
                   quiet_end=policy.quiet_end.strftime("%H:%M"),
                   weekly_cap=policy.weekly_cap, max_attempts=policy.max_attempts,
                   log_retention_days=policy.log_retention_days)


class PolicyUpdate(BaseModel):
    quiet_start: LocalTime | None = None
    quiet_end: LocalTime | None = None
    weekly_cap: int | None = Field(default=None, ge=0, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=50)
    #: Days a finished message keeps its text and address (decision 0004).
    log_retention_days: int | None = Field(default=None, ge=messaging.RETENTION_DAYS[0],
                                           le=messaging.RETENTION_DAYS[1])


@router.get("/messaging/policy", operation_id="get_messaging_policy")
def get_policy(ctx: Ctx, session: DbSession, principal: CurrentPrincipal) -> PolicyRead:
    require_role(principal, Role.MANAGER)
    return PolicyRead.of(messaging.get_policy(session, clock=ctx.clock))


@router.patch("/messaging/policy", operation_id="update_messaging_policy")
def update_policy(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  body: PolicyUpdate) -> PolicyRead:
    """Quiet hours (each store's local time), weekly marketing cap, delivery attempts,
    and how long finished messages keep their text and address."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True)
    for key in ("quiet_start", "quiet_end"):
        if key in changes:
            changes[key] = time.fromisoformat(changes[key])
    p = messaging.update_policy(session, clock=ctx.clock, actor=principal, changes=changes)
    session.commit()
    return PolicyRead.of(p)


# ---------------------------------------------------------------- webhook endpoints


class EndpointCreate(BaseModel):
    url: HttpUrl
    event_types: list[str] = Field(default_factory=list, max_length=50,
                                   description="Event types to receive; empty = all")
    description: str = Field(default="", max_length=200)


class EndpointRead(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: datetime
    secret: str | None = Field(default=None, description="Shown once, at creation")


def _endpoint_read(e: WebhookEndpoint, secret: str | None = None) -> EndpointRead:
    return EndpointRead(id=e.id, url=e.url, event_types=list(e.event_types),
                        description=e.description, active=e.active, created_at=e.created_at,
                        secret=secret)


@router.get("/webhooks/endpoints", operation_id="list_webhook_endpoints")
def list_endpoints(session: DbSession, principal: CurrentPrincipal) -> list[EndpointRead]:
    require_role(principal, Role.OWNER, users_only=True)
    return [_endpoint_read(e) for e in session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))]


@router.post("/webhooks/endpoints", status_code=201, operation_id="create_webhook_endpoint")
def create_endpoint(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    body: EndpointCreate) -> EndpointRead:
    """Register an integrator's URL; deliveries are signed with the secret returned here
    (``Patron-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``)."""
    require_role(principal, Role.OWNER, users_only=True)
    if body.url.scheme not in ("https", "http"):
        raise ValidationFailed("Webhooks are delivered over HTTP(S)", "url")
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(url=str(body.url), secret=secret, event_types=body.event_types,
                               description=body.description, active=True,
                               created_at=ctx.clock.now())
    session.add(endpoint)
    session.flush()
    audit.record(session, clock=ctx.clock, actor=principal, action="webhook.created",
                 entity_type="webhook_endpoint", entity_id=endpoint.id,
                 details={"url": endpoint.url, "event_types": body.event_types})
    session.commit()
    return _endpoint_read(endpoint, secret)


@router.post("/webhooks/endpoints/{endpoint_id}/deactivate",
             operation_id="deactivate_webhook_endpoint")
def deactivate_endpoint(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                        endpoint_id: uuid.UUID) -> EndpointRead:
    require_role(principal, Role.OWNER, users_only=True)
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint", "endpoint_id")
    endpoint.active = False
    audit.record(session, clock=ctx.clock, actor=principal, action="webhook.deactivated",
                 entity_type="webhook_endpoint", entity_id=endpoint.id, details={})
    session.commit()
    return _endpoint_read(endpoint)


# ---------------------------------------------------------------- care rules


class RuleRead(BaseModel):
    code: str
    enabled: bool
    config: dict[str, Any]


class RuleUpdate(BaseModel):
    enabled: bool
    config: dict[str, Any] = Field(default_factory=dict)
    store_id: uuid.UUID | None = Field(default=None, description="Override for one store")


@router.get("/care/rules", operation_id="list_care_rules")
def list_rules(session: DbSession, principal: CurrentPrincipal,
               store_id: uuid.UUID | None = None) -> list[RuleRead]:
    require_role(principal, Role.MANAGER)
    out = []
    for code in care.RULES:
        config = care.rule_config(session, code, store_id)
        enabled = bool(config.pop("enabled"))
        out.append(RuleRead(code=code, enabled=enabled, config=config))
    return out


@router.put("/care/rules/{code}", operation_id="update_care_rule")
def update_rule(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, code: str,
                body: RuleUpdate) -> RuleRead:
    """Switch a care rule and change its settings, brand-wide (owners) or for a store."""
    if body.store_id is not None and not principal.can_access_store(body.store_id):
        raise PermissionDenied("You don't manage this store")
    config = care.set_rule(session, clock=ctx.clock, actor=principal, code=code,
                           enabled=body.enabled, config=body.config, store_id=body.store_id)
    session.commit()
    enabled = bool(config.pop("enabled"))
    return RuleRead(code=code, enabled=enabled, config=config)


class PreviewRead(BaseModel):
    template: str
    language: str
    purpose: str
    subject: str
    text: str
    html: str
    sms_text: str
    sms_segments: int
    sms_encoding: str


@router.get("/messaging/templates", operation_id="list_message_templates")
def list_templates(principal: CurrentPrincipal) -> list[dict[str, str]]:
    require_role(principal, Role.MANAGER)
    return [{"name": t.name, "purpose": t.purpose.value, "description": t.description}
            for t in TEMPLATES.values()]


@router.get("/messaging/templates/{name}/preview", operation_id="preview_message_template")
def preview_template(ctx: Ctx, principal: CurrentPrincipal, name: str,
                     language: Literal["en", "zh_CN"] | None = None) -> PreviewRead:
    """A template rendered with a sample member, as SMS and e-mail."""
    require_role(principal, Role.MANAGER)
    renderer = TemplateRenderer(default_language=ctx.settings.default_language)
    r = renderer.preview(name, language=language)
    return PreviewRead(template=r.template, language=r.language, purpose=r.purpose.value,
                       subject=r.subject, text=r.text, html=r.html, sms_text=r.sms_text,
                       sms_segments=r.sms.segments, sms_encoding=r.sms.encoding)


# ---------------------------------------------------------------- providers and members


def _shared_token_ok(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected, given)


@router.post("/messaging/providers/twilio/status", operation_id="twilio_status_callback",
             include_in_schema=False)
async def twilio_status(request: Request, ctx: Ctx, session: DbSession) -> Response:
    """Twilio's StatusCallback: verified by X-Twilio-Signature over the URL and form."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    token = ChannelSettings().twilio.auth_token.get_secret_value()
    if not token or not twilio.verify_signature(
            token, str(request.url), form, request.headers.get("X-Twilio-Signature", "")):
        raise PermissionDenied("Bad or missing X-Twilio-Signature")
    report = twilio.parse_status_callback(form)
    if report.status is not DeliveryStatus.PENDING:
        messaging.record_delivery(session, clock=ctx.clock,
                                  provider_message_id=report.provider_message_id,
                                  delivered=report.status is DeliveryStatus.DELIVERED,
                                  detail=report.error_code or "")
        session.commit()
    return Response(status_code=204)


@router.post("/messaging/providers/twilio/inbound", operation_id="twilio_inbound_sms",
             include_in_schema=False)
async def twilio_inbound(request: Request, ctx: Ctx, session: DbSession) -> Response:
    """A member's SMS reply through Twilio (a stop word withdraws SMS consent at once)."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    token = ChannelSettings().twilio.auth_token.get_secret_value()
    if not token or not twilio.verify_signature(
            token, str(request.url), form, request.headers.get("X-Twilio-Signature", "")):
        raise PermissionDenied("Bad or missing X-Twilio-Signature")
    messaging.receive_sms(session, clock=ctx.clock, sender=form.get("From", ""),
                          text=form.get("Body", ""), region=ctx.settings.default_region)
    session.commit()
    return Response("<Response/>", media_type="application/xml")


def _callback_token(ctx: Ctx) -> str:
    token = ctx.settings.callback_token
    return token.get_secret_value() if token is not None else ""


@router.post("/messaging/providers/aliyun/status", operation_id="aliyun_status_reports",
             include_in_schema=False)
async def aliyun_status(request: Request, ctx: Ctx, session: DbSession,
                        token: str | None = None) -> dict[str, Any]:
    """Aliyun SMS delivery reports (push mode); the URL carries the shared token."""
    if not _shared_token_ok(_callback_token(ctx), token):
        raise PermissionDenied("Bad or missing token")
    for report in aliyun.parse_reports(await request.body()):
        if report.status is not DeliveryStatus.PENDING:
            messaging.record_delivery(session, clock=ctx.clock,
                                      provider_message_id=report.provider_message_id,
                                      delivered=report.status is DeliveryStatus.DELIVERED,
                                      detail=report.error_code or "")
    session.commit()
    return dict(aliyun.REPORT_ACK)


class InboundSms(BaseModel):
    sender: str = Field(min_length=3, max_length=32, alias="from")
    text: str = Field(max_length=2000)


@router.post("/messaging/providers/gateway/inbound", operation_id="gateway_inbound_sms",
             status_code=204, include_in_schema=False)
def gateway_inbound(ctx: Ctx, session: DbSession, body: InboundSms,
                    token: str | None = None) -> Response:
    """An SMS reply through the generic gateway (JSON ``{"from", "text"}``)."""
    if not _shared_token_ok(_callback_token(ctx), token):
        raise PermissionDenied("Bad or missing token")
    messaging.receive_sms(session, clock=ctx.clock, sender=body.sender, text=body.text,
                          region=ctx.settings.default_region)
    session.commit()
    return Response(status_code=204)


@router.post("/public/unsubscribe/{token}", operation_id="unsubscribe_one_click",
             status_code=204)
def unsubscribe(ctx: Ctx, session: DbSession, token: str) -> Response:
    """RFC 8058 one-click unsubscribe (the ``List-Unsubscribe-Post`` target): the signed
    token in the link is the authentication; consent is withdrawn at once."""
    member = messaging.unsubscribe(session, clock=ctx.clock,
                                   secret=ctx.settings.secret_key.get_secret_value(),
                                   token=token)
    channel = messaging.read_unsubscribe_token(ctx.settings.secret_key.get_secret_value(),
                                               token)[1]
    messaging.suppress_queued_for(session, clock=ctx.clock, member_id=member.id,
                                  channel=channel.value)
    session.commit()
    return Response(status_code=204)
