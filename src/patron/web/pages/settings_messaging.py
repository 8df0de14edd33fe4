"""Messaging settings: quiet hours, the weekly cap and how long message logs keep their
content (stored, owners change them), the channels (read-only: they are configured in the
environment), and a test message.

Channel settings are read from the environment each time the page is shown, the way the
worker builds them, so the page shows what the next worker start would use; secrets are
never shown, only whether they are set. A test message goes through the outbox and the
configured channel like any other (``messaging.send_test_message``), so it proves the
provider settings without a member, consent or cap involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.messaging import service as messaging
from patron.messaging.config import ChannelSettings
from patron.web.deps import Db, Page, PostedForm, principal_of
from patron.web.forms import Form
from patron.web.i18n import N_
from patron.web.pages.settings_forms import ManagerPage, is_owner, run, whole
from patron.web.routing import web_router
from patron.web.templating import FLASHES, redirect, render

router = web_router()
FLASHES.update({"policy_saved": N_("Messaging rules saved."),
                "test_queued": N_("Test message queued: the worker sends it within a minute.")})

POLICY_FIELDS = ("quiet_start", "quiet_end", "weekly_cap", "max_attempts",
                 "log_retention_days")
TEST_FIELDS = ("channel", "recipient")

#: What each provider does, for the channel table.
PROVIDER_NOTES = {
    "log": N_("Writes each message to a log file; nothing reaches a customer."),
    "none": N_("Switched off: messages on this channel are not sent."),
    "smtp": N_("E-mail through an SMTP relay."),
    "twilio": N_("SMS through Twilio."),
    "aliyun": N_("SMS through Aliyun SMS."),
    "gateway": N_("SMS through an HTTP gateway."),
    "http": N_("Signed HTTP POSTs to the integrators' endpoints."),
}


@dataclass(frozen=True)
class ChannelStatus:
    """One row of the channel table: never a secret, only whether one is set."""

    channel: str
    provider: str
    detail: str
    note: str


def channel_status() -> tuple[list[ChannelStatus], str | None]:
    """The configured channels, or the configuration error the worker would stop on."""
    try:
        cfg = ChannelSettings()
    except ValidationError as exc:
        return [], "; ".join(str(e.get("msg", "")) for e in exc.errors())
    sms_detail = {
        "twilio": cfg.twilio.from_number or cfg.twilio.messaging_service_sid or "",
        "aliyun": cfg.aliyun_sms.sign_name,
        "gateway": cfg.sms_gateway.url,
        "log": cfg.message_log_path,
    }.get(cfg.sms_provider, "")
    email_detail = {
        "smtp": f"{cfg.smtp.from_address} via {cfg.smtp.host}:{cfg.smtp.port or ''} "
                f"({cfg.smtp.security})".replace(":  ", " "),
        "log": cfg.message_log_path,
    }.get(cfg.email_provider, "")
    webhook_detail = cfg.message_log_path if cfg.webhook_provider == "log" else ""
    return [ChannelStatus("sms", cfg.sms_provider, sms_detail, PROVIDER_NOTES[cfg.sms_provider]),
            ChannelStatus("email", cfg.email_provider, email_detail,
                          PROVIDER_NOTES[cfg.email_provider]),
            ChannelStatus("webhook", cfg.webhook_provider, webhook_detail,
                          PROVIDER_NOTES[cfg.webhook_provider])], None


def _page(page: Page, session: Session, form: Form, test_form: Form,
          status: int = 200) -> Response:
    channels, problem = channel_status()
    return render(page, "settings/messaging.html", status=status, form=form,
                  test_form=test_form, channels=channels, channel_problem=problem,
                  counts=messaging.status_counts(session), can_edit=is_owner(page),
                  retention=messaging.RETENTION_DAYS)


def _policy_form(page: Page, session: Session) -> Form:
    p = messaging.get_policy(session, clock=page.app.clock)
    return Form.initial({"quiet_start": p.quiet_start.strftime("%H:%M"),
                         "quiet_end": p.quiet_end.strftime("%H:%M"),
                         "weekly_cap": p.weekly_cap, "max_attempts": p.max_attempts,
                         "log_retention_days": p.log_retention_days},
                        POLICY_FIELDS)


@router.get("/settings/messaging")
def messaging_page(page: ManagerPage, session: Db) -> Response:
    return _page(page, session, _policy_form(page, session),
                 Form.initial({"channel": "sms"}, TEST_FIELDS))


def _time(form: Form, page: Page, name: str) -> time | None:
    raw = form.get(name)
    try:
        return time.fromisoformat(raw) if raw else None
    except ValueError:
        pass
    form.add(name, page.gettext(N_("Enter a time such as 21:00")))
    return None


@router.post("/settings/messaging")
def save_policy(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, POLICY_FIELDS)
    changes: dict[str, Any] = {}
    for name in ("quiet_start", "quiet_end"):
        value = _time(form, page, name)
        if value is None and not form.error(name):
            form.add(name, page.gettext(N_("Enter a time such as 21:00")))
        changes[name] = value
    for name in ("weekly_cap", "max_attempts", "log_retention_days"):
        changes[name] = whole(form, page, name)
    done, status = run(page, form, lambda: messaging.update_policy(
        session, clock=page.app.clock, actor=principal_of(page), changes=changes))
    if done is None:
        session.rollback()
        return _page(page, session, form, Form.initial({"channel": "sms"}, TEST_FIELDS),
                     status)
    session.commit()
    return redirect(page, "/settings/messaging", flash="policy_saved")


@router.post("/settings/messaging/test")
def send_test(page: ManagerPage, session: Db, data: PostedForm) -> Response:
    form = Form.posted(data, TEST_FIELDS)
    done, status = run(page, form, lambda: messaging.send_test_message(
        session, clock=page.app.clock, actor=principal_of(page), channel=form.get("channel"),
        recipient=form.get("recipient"), region=page.app.settings.default_region,
        language=page.language))
    if done is None:
        session.rollback()
        return _page(page, session, _policy_form(page, session), form, status)
    session.commit()
    return redirect(page, "/settings/messaging", flash="test_queued")
