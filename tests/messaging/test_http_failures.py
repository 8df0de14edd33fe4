"""Every HTTP provider classifies failures the same way: "not now" is retried, "never" is not.

5xx, 429 and 408 answers, timeouts and refused connections are RETRYABLE; other 4xx
answers (a bad number, refused credentials) are PERMANENT. Webhooks differ on 4xx on
purpose (see test_webhooks).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from patron.core.clock import FixedClock
from patron.messaging.channels import Channel, ChannelKind, Message, SendStatus
from patron.messaging.channels.aliyun import AliyunSmsChannel
from patron.messaging.channels.gateway import SmsGatewayChannel
from patron.messaging.channels.twilio import TwilioChannel
from patron.messaging.channels.webhooks import WebhookChannel
from tests.messaging.stub import Reply, Responder, StubServer, closed_url

Build = Callable[[str, httpx.Client, FixedClock], Channel]

BUILDERS: dict[str, Build] = {
    "twilio": lambda url, client, clock: TwilioChannel(
        account_sid="AC1", auth_token="t", from_number="+15005550006", base_url=url,
        client=client),
    "aliyun": lambda url, client, clock: AliyunSmsChannel(
        access_key_id="id", access_key_secret="s", sign_name="品牌",
        template_codes={"receipt": "SMS_1"}, endpoint=url, client=client, clock=clock),
    "gateway": lambda url, client, clock: SmsGatewayChannel(url=url + "/sms", token="tok",
                                                            client=client),
    "webhook": lambda url, client, clock: WebhookChannel(secret="whsec", client=client,
                                                         clock=clock),
}


def message_for(name: str, url: str) -> Message:
    if name == "webhook":
        return Message(kind=ChannelKind.WEBHOOK, recipient=url + "/hook", body="{}",
                       dedupe_key="d-1", event="sale.completed")
    return Message(kind=ChannelKind.SMS, recipient="+8613912345678", body="hi",
                   dedupe_key="d-1", template="receipt", template_params={"name": "x"})


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_server_errors_and_rate_limits_are_retryable(
        stub: Callable[[Responder], StubServer], http: httpx.Client, clock: FixedClock,
        name: str, status: int) -> None:
    server = stub(lambda r: Reply.json(status, json.dumps({"message": "busy"})))
    result = BUILDERS[name](server.url, http, clock).send(message_for(name, server.url))
    assert result.status is SendStatus.RETRYABLE
    assert result.http_status == status
    assert result.reason


@pytest.mark.parametrize("name", ["twilio", "aliyun", "gateway"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent_for_sms_providers(
        stub: Callable[[Responder], StubServer], http: httpx.Client, clock: FixedClock,
        name: str, status: int) -> None:
    server = stub(lambda r: Reply.json(status, json.dumps({"message": "no"})))
    result = BUILDERS[name](server.url, http, clock).send(message_for(name, server.url))
    assert result.status is SendStatus.PERMANENT
    assert result.http_status == status


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_timeout_is_retryable(stub: Callable[[Responder], StubServer], clock: FixedClock,
                                name: str) -> None:
    server = stub(lambda r: Reply(200, "{}", delay_s=1.5))
    with httpx.Client(timeout=httpx.Timeout(0.2, connect=1.0)) as client:
        result = BUILDERS[name](server.url, client, clock).send(message_for(name, server.url))
    assert result.status is SendStatus.RETRYABLE
    assert result.error_code == "timeout"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_refused_connection_is_retryable(http: httpx.Client, clock: FixedClock,
                                           name: str) -> None:
    url = closed_url()
    result = BUILDERS[name](url, http, clock).send(message_for(name, url))
    assert result.status is SendStatus.RETRYABLE
    assert result.error_code == "connection"


def test_retry_after_as_an_http_date_becomes_seconds(
        stub: Callable[[Responder], StubServer], http: httpx.Client, clock: FixedClock) -> None:
    server = stub(lambda r: Reply(503, "", {"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}))
    result = BUILDERS["gateway"](server.url, http, clock).send(message_for("gateway",
                                                                           server.url))
    assert result.retry_after_s is not None and result.retry_after_s > 86_400
