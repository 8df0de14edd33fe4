"""Channels built from :class:`~patron.messaging.config.ChannelSettings`, once per worker.

The worker builds a :class:`ChannelSet` at start-up, asks it for the channel of each
message's kind, and closes it at shutdown. The HTTP channels share one ``httpx.Client``
(a connection pool; httpx clients are thread-safe) unless the caller injects its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from patron.core.clock import Clock
from patron.messaging.channels.aliyun import AliyunSmsChannel
from patron.messaging.channels.base import Channel, ChannelKind, new_http_client
from patron.messaging.channels.gateway import SmsGatewayChannel
from patron.messaging.channels.logfile import LogFileChannel
from patron.messaging.channels.smtp import SmtpChannel
from patron.messaging.channels.twilio import TwilioChannel
from patron.messaging.channels.webhooks import SecretSource, WebhookChannel
from patron.messaging.config import ChannelSettings


class ChannelNotConfigured(LookupError):
    """A message of a kind whose provider is ``none`` (or that has no channel at all)."""


@dataclass
class ChannelSet:
    """The deployment's channel per kind of message; closes what it built."""

    channels: dict[ChannelKind, Channel]
    _client: httpx.Client | None = field(default=None, repr=False)

    def get(self, kind: ChannelKind) -> Channel:
        try:
            return self.channels[kind]
        except KeyError:
            raise ChannelNotConfigured(
                f"no {kind} channel is configured (PATRON_{kind.upper()}_PROVIDER=none)"
            ) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self.channels

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        if self._client is not None:
            self._client.close()


def build_channels(settings: ChannelSettings, *, client: httpx.Client | None = None,
                   clock: Clock | None = None,
                   webhook_secret: SecretSource | None = None) -> ChannelSet:
    """Every configured channel.

    ``webhook_secret`` is how the caller gives each endpoint its own secret (a function of
    the message); without it the deployment-wide ``PATRON_WEBHOOK_SECRET`` signs every
    delivery. ``client`` replaces the shared HTTP client (tests point it at loopback).
    """
    owned = None
    if client is None:
        owned = client = new_http_client(
            httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s))
    channels: dict[ChannelKind, Channel] = {}
    log_path = settings.message_log_path

    sms = _sms_channel(settings, client, clock)
    if sms is not None:
        channels[ChannelKind.SMS] = sms

    if settings.email_provider == "smtp":
        s = settings.smtp
        channels[ChannelKind.EMAIL] = SmtpChannel(
            host=s.host, port=s.port, security=s.security, username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            from_address=s.from_address, from_name=s.from_name, reply_to=s.reply_to,
            envelope_from=s.envelope_from, message_id_domain=s.message_id_domain,
            timeout_s=s.timeout_s, local_hostname=s.local_hostname, clock=clock)
    elif settings.email_provider == "log":
        channels[ChannelKind.EMAIL] = LogFileChannel(path=log_path, kind=ChannelKind.EMAIL,
                                                     clock=clock)

    if settings.webhook_provider == "http":
        secret: SecretSource | None = webhook_secret
        if secret is None and settings.webhook.secret is not None:
            secret = settings.webhook.secret.get_secret_value()
        if not secret:
            raise ValueError("webhooks need PATRON_WEBHOOK_SECRET or a per-endpoint secret")
        channels[ChannelKind.WEBHOOK] = WebhookChannel(secret=secret, client=client, clock=clock)
    elif settings.webhook_provider == "log":
        channels[ChannelKind.WEBHOOK] = LogFileChannel(path=log_path, kind=ChannelKind.WEBHOOK,
                                                       clock=clock)
    return ChannelSet(channels=channels, _client=owned)


def _sms_channel(settings: ChannelSettings, client: httpx.Client,
                 clock: Clock | None) -> Channel | None:
    provider = settings.sms_provider
    if provider == "twilio":
        t = settings.twilio
        return TwilioChannel(
            account_sid=t.account_sid, auth_token=t.auth_token.get_secret_value(),
            from_number=t.from_number, messaging_service_sid=t.messaging_service_sid,
            status_callback_url=t.status_callback_url, base_url=t.base_url, client=client)
    if provider == "aliyun":
        a = settings.aliyun_sms
        return AliyunSmsChannel(
            access_key_id=a.access_key_id, access_key_secret=a.access_key_secret.get_secret_value(),
            sign_name=a.sign_name, template_codes=a.template_codes, region_id=a.region_id,
            endpoint=a.endpoint, client=client, clock=clock)
    if provider == "gateway":
        g = settings.sms_gateway
        return SmsGatewayChannel(url=g.url, token=g.token.get_secret_value() if g.token else None,
                                 client=client)
    if provider == "log":
        return LogFileChannel(path=settings.message_log_path, kind=ChannelKind.SMS, clock=clock)
    return None
