"""The generic SMS gateway contract, and signed outgoing webhooks verified as an integrator
would verify them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from patron.core.clock import FixedClock
from patron.messaging.channels import ChannelKind, Message, SendStatus
from patron.messaging.channels.gateway import SmsGatewayChannel
from patron.messaging.channels.webhooks import (
    WebhookChannel,
    event_body,
    signature_header,
    verify_signature,
)
from tests.messaging.stub import NOW, Recorded, Reply, Responder, StubServer

# ---------------------------------------------------------------- gateway


def gateway_like(request: Recorded) -> Reply:
    assert request.method == "POST" and request.path == "/v1/sms"
    if request.header("Authorization") != "Bearer gw-token":
        return Reply.json(401, '{"error": "unauthorised"}')
    assert request.header("Content-Type") == "application/json"
    payload = json.loads(request.body)
    assert set(payload) == {"to", "text", "reference"}
    return Reply.json(202, json.dumps({"id": "gw-" + payload["reference"]}))


def sms(body: str = "【帕创茶铺】您的积分即将过期") -> Message:
    return Message(kind=ChannelKind.SMS, recipient="+8613912345678", body=body,
                   dedupe_key="msg-7")


def test_gateway_posts_json_with_a_bearer_token(stub: Callable[[Responder], StubServer],
                                                http: httpx.Client) -> None:
    server = stub(gateway_like)
    result = SmsGatewayChannel(url=server.url + "/v1/sms", token="gw-token",
                               client=http).send(sms())
    server.check()
    assert result.status is SendStatus.ACCEPTED
    assert result.provider_message_id == "gw-msg-7"
    assert json.loads(server.requests[0].body) == {
        "to": "+8613912345678", "text": "【帕创茶铺】您的积分即将过期", "reference": "msg-7"}


def test_gateway_without_an_id_in_the_answer_uses_the_reference(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(lambda r: Reply(204))
    result = SmsGatewayChannel(url=server.url + "/v1/sms", client=http).send(sms())
    assert (result.status, result.provider_message_id) == (SendStatus.ACCEPTED, "msg-7")


def test_gateway_with_a_wrong_token_is_permanent(stub: Callable[[Responder], StubServer],
                                                 http: httpx.Client) -> None:
    server = stub(gateway_like)
    result = SmsGatewayChannel(url=server.url + "/v1/sms", token="nope", client=http).send(sms())
    assert result.status is SendStatus.PERMANENT
    assert "unauthorised" in result.reason


# ---------------------------------------------------------------- webhooks

SECRET = "whsec_9f8e7d6c5b4a"


def webhook(url: str, *, body: str | None = None) -> Message:
    return Message(kind=ChannelKind.WEBHOOK, recipient=url, dedupe_key="dlv-01J",
                   event="sale.completed",
                   body=body or event_body(event="sale.completed", delivery_id="dlv-01J",
                                           created_at=NOW,
                                           data={"receipt_no": "JA-1", "total_minor": 18000,
                                                 "member": "李娜"}))


def integrator(secret: str, now: float) -> Callable[[Recorded], Reply]:
    """An integrator's endpoint: verifies the signature over the raw body it received."""

    def respond(request: Recorded) -> Reply:
        assert request.method == "POST" and request.path == "/patron/events"
        assert request.header("Content-Type") == "application/json; charset=utf-8"
        assert request.header("Patron-Event") == "sale.completed"
        assert request.header("Patron-Delivery") == "dlv-01J"
        if not verify_signature(secret, request.header("Patron-Signature"), request.body,
                                now=now):
            return Reply(400, "bad signature")
        json.loads(request.body)
        return Reply(200, "ok")

    return respond


def test_a_delivery_verifies_at_the_integrator(stub: Callable[[Responder], StubServer],
                                               http: httpx.Client, clock: FixedClock) -> None:
    server = stub(integrator(SECRET, NOW.timestamp()))
    url = server.url + "/patron/events"
    result = WebhookChannel(secret=SECRET, client=http, clock=clock).send(webhook(url))
    server.check()
    assert result.status is SendStatus.SENT, result.reason
    assert result.provider_message_id == "dlv-01J"
    header = server.requests[0].header("Patron-Signature") or ""
    timestamp = int(NOW.timestamp())
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + server.requests[0].body,
                        hashlib.sha256).hexdigest()
    assert header == f"t={timestamp},v1={expected}"


def test_an_endpoint_secret_comes_from_the_callers_lookup(
        stub: Callable[[Responder], StubServer], http: httpx.Client, clock: FixedClock) -> None:
    server = stub(integrator("per-endpoint-secret", NOW.timestamp()))
    url = server.url + "/patron/events"
    channel = WebhookChannel(secret=lambda m: {url: "per-endpoint-secret"}[m.recipient],
                             client=http, clock=clock)
    assert channel.send(webhook(url)).ok
    server.check()


def test_a_wrong_secret_fails_at_the_integrator_and_is_retried(
        stub: Callable[[Responder], StubServer], http: httpx.Client, clock: FixedClock) -> None:
    server = stub(integrator(SECRET, NOW.timestamp()))
    result = WebhookChannel(secret="other", client=http, clock=clock).send(
        webhook(server.url + "/patron/events"))
    assert result.status is SendStatus.RETRYABLE
    assert result.http_status == 400


@pytest.mark.parametrize(("status", "expected"), [
    (200, SendStatus.SENT), (204, SendStatus.SENT),
    (410, SendStatus.PERMANENT), (413, SendStatus.PERMANENT),
    (400, SendStatus.RETRYABLE), (401, SendStatus.RETRYABLE), (404, SendStatus.RETRYABLE),
    (301, SendStatus.RETRYABLE), (500, SendStatus.RETRYABLE),
])
def test_webhook_answers_are_classified(stub: Callable[[Responder], StubServer],
                                        http: httpx.Client, clock: FixedClock, status: int,
                                        expected: SendStatus) -> None:
    server = stub(lambda r: Reply(status, "", {"Location": "https://elsewhere.example/"}))
    result = WebhookChannel(secret=SECRET, client=http, clock=clock).send(
        webhook(server.url + "/patron/events"))
    assert result.status is expected
    assert len(server.requests) == 1  # a redirect is not followed


BODY = b'{"id":"dlv-1","type":"member.joined","data":{"name":"\xe6\x9d\x8e\xe5\xa8\x9c"}}'


def test_signature_round_trip_and_tampering() -> None:
    header = signature_header(SECRET, BODY, 1_700_000_000)
    assert verify_signature(SECRET, header, BODY, now=1_700_000_100)
    assert verify_signature(SECRET, header, BODY.decode(), now=1_700_000_100)
    assert not verify_signature(SECRET, header, BODY.replace(b"member", b"member "),
                                now=1_700_000_100)
    assert not verify_signature("whsec_other", header, BODY, now=1_700_000_100)
    forged = header.replace("t=1700000000", "t=1700000050")
    assert not verify_signature(SECRET, forged, BODY, now=1_700_000_100)


def test_an_old_or_future_signature_is_refused_as_a_replay() -> None:
    header = signature_header(SECRET, BODY, 1_700_000_000)
    assert verify_signature(SECRET, header, BODY, tolerance_s=300, now=1_700_000_300)
    assert not verify_signature(SECRET, header, BODY, tolerance_s=300, now=1_700_000_301)
    assert not verify_signature(SECRET, header, BODY, tolerance_s=300, now=1_699_999_699)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=1700000000", "t=abc,v1=00",
                                    "t=1700000000,v0=00", "garbage"])
def test_malformed_headers_are_refused(header: str | None) -> None:
    assert not verify_signature(SECRET, header, BODY, now=1_700_000_000)


def test_while_rotating_either_secret_verifies() -> None:
    header = signature_header(["whsec_new", "whsec_old"], BODY, 1_700_000_000)
    assert header.count("v1=") == 2
    assert verify_signature("whsec_new", header, BODY, now=1_700_000_000)
    assert verify_signature("whsec_old", header, BODY, now=1_700_000_000)
    assert not verify_signature("whsec_neither", header, BODY, now=1_700_000_000)


def test_the_event_envelope_is_deterministic() -> None:
    one = event_body(event="tier.changed", delivery_id="d", created_at=NOW,
                     data={"b": 1, "a": "金卡"})
    two = event_body(event="tier.changed", delivery_id="d", created_at=NOW,
                     data={"a": "金卡", "b": 1})
    assert one == two
    assert json.loads(one) == {"id": "d", "type": "tier.changed",
                               "created_at": NOW.isoformat(), "data": {"a": "金卡", "b": 1}}


def test_a_webhook_message_needs_an_event() -> None:
    with pytest.raises(ValueError, match="event type"):
        Message(kind=ChannelKind.WEBHOOK, recipient="https://x.example", body="{}",
                dedupe_key="d")


def test_the_signature_time_comes_from_the_clock(stub: Callable[[Responder], StubServer],
                                                 http: httpx.Client, clock: FixedClock) -> None:
    server = stub(lambda r: Reply(200))
    clock.advance(timedelta(minutes=10))
    WebhookChannel(secret=SECRET, client=http, clock=clock).send(
        webhook(server.url + "/patron/events"))
    header = server.requests[0].header("Patron-Signature") or ""
    assert header.startswith(f"t={int(NOW.timestamp()) + 600},")
