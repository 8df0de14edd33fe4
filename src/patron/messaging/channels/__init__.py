"""Channel adapters: one provider each, one synchronous ``send(message) -> SendResult``.

The worker builds them with :func:`build_channels` from
:class:`~patron.messaging.config.ChannelSettings` and picks one per message kind.
"""

from patron.messaging.channels.aliyun import AliyunSmsChannel
from patron.messaging.channels.aliyun import parse_reports as parse_aliyun_reports
from patron.messaging.channels.base import (
    Channel,
    ChannelKind,
    DeliveryReport,
    DeliveryStatus,
    Message,
    SendResult,
    SendStatus,
    WrongChannel,
)
from patron.messaging.channels.factory import ChannelNotConfigured, ChannelSet, build_channels
from patron.messaging.channels.gateway import SmsGatewayChannel
from patron.messaging.channels.logfile import LogFileChannel
from patron.messaging.channels.smtp import SmtpChannel
from patron.messaging.channels.twilio import TwilioChannel
from patron.messaging.channels.twilio import parse_status_callback as parse_twilio_status_callback
from patron.messaging.channels.twilio import verify_signature as verify_twilio_signature
from patron.messaging.channels.webhooks import WebhookChannel
from patron.messaging.channels.webhooks import verify_signature as verify_webhook_signature

__all__ = [
    "AliyunSmsChannel",
    "Channel",
    "ChannelKind",
    "ChannelNotConfigured",
    "ChannelSet",
    "DeliveryReport",
    "DeliveryStatus",
    "LogFileChannel",
    "Message",
    "SendResult",
    "SendStatus",
    "SmsGatewayChannel",
    "SmtpChannel",
    "TwilioChannel",
    "WebhookChannel",
    "WrongChannel",
    "build_channels",
    "parse_aliyun_reports",
    "parse_twilio_status_callback",
    "verify_twilio_signature",
    "verify_webhook_signature",
]
