"""Twilio: the Messages API request as Twilio documents it, and its status callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from urllib.parse import parse_qs, parse_qsl

import httpx
import pytest

from patron.messaging.channels import ChannelKind, DeliveryStatus, Message, SendStatus
from patron.messaging.channels.twilio import (
    TwilioChannel,
    compute_signature,
    parse_status_callback,
    verify_signature,
)
from tests.messaging.stub import Recorded, Reply, Responder, StubServer, closed_url

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "auth-token-0123"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def sms(body: str = "【帕创茶铺】李娜您好，您在静安店消费¥180.00", to: str = "+8613912345678") -> Message:
    return Message(kind=ChannelKind.SMS, recipient=to, body=body, dedupe_key="msg-1")


def channel(base_url: str, client: httpx.Client,
            status_callback_url: str | None = None) -> TwilioChannel:
    return TwilioChannel(account_sid=SID, auth_token=TOKEN, from_number="+15005550006",
                         status_callback_url=status_callback_url, base_url=base_url,
                         client=client)


def twilio_like(request: Recorded) -> Reply:
    """Answers like Twilio after checking what Twilio checks."""
    assert request.method == "POST"
    assert request.path == PATH
    expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    if request.header("Authorization") != expected:
        return Reply.json(401, json.dumps({"code": 20003, "message": "Authenticate",
                                           "status": 401}))
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    form = parse_qs(request.body.decode(), strict_parsing=True)
    assert form["To"] and form["Body"]
    assert ("From" in form) != ("MessagingServiceSid" in form)
    return Reply.json(201, json.dumps({"sid": "SM" + "a" * 32, "status": "queued",
                                       "to": form["To"][0]}))


def test_send_posts_the_documented_form_with_basic_auth(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(twilio_like)
    result = channel(server.url, http, status_callback_url="https://shop.example/hooks/twilio"
                     ).send(sms())
    server.check()
    assert result.status is SendStatus.ACCEPTED
    assert result.provider_message_id == "SM" + "a" * 32
    form = dict(parse_qsl(server.requests[0].body.decode()))
    assert form == {"To": "+8613912345678", "From": "+15005550006",
                    "Body": "【帕创茶铺】李娜您好，您在静安店消费¥180.00",
                    "StatusCallback": "https://shop.example/hooks/twilio"}


def test_a_messaging_service_replaces_the_from_number(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(twilio_like)
    twilio = TwilioChannel(account_sid=SID, auth_token=TOKEN, base_url=server.url, client=http,
                           messaging_service_sid="MG" + "b" * 32)
    assert twilio.send(sms()).ok
    server.check()
    form = dict(parse_qsl(server.requests[0].body.decode()))
    assert form["MessagingServiceSid"] == "MG" + "b" * 32
    assert "From" not in form


def test_wrong_credentials_are_permanent(stub: Callable[[Responder], StubServer],
                                         http: httpx.Client) -> None:
    server = stub(twilio_like)
    twilio = TwilioChannel(account_sid=SID, auth_token="wrong", from_number="+15005550006",
                           base_url=server.url, client=http)
    result = twilio.send(sms())
    assert result.status is SendStatus.PERMANENT
    assert result.error_code == "20003"
    assert "credentials" in result.reason


def test_an_invalid_number_is_permanent_with_twilios_code_and_message(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(lambda r: Reply.json(400, json.dumps({
        "code": 21211, "message": "The 'To' number +861 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})))
    result = channel(server.url, http).send(sms(to="+861"))
    assert result.status is SendStatus.PERMANENT
    assert result.error_code == "21211"
    assert "not a valid phone number" in result.reason
    assert result.http_status == 400


def test_too_many_requests_is_retryable_with_the_providers_hint(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(lambda r: Reply.json(429, json.dumps({"code": 20429,
                                                        "message": "Too Many Requests"}),
                                       **{"Retry-After": "7"}))
    result = channel(server.url, http).send(sms())
    assert result.status is SendStatus.RETRYABLE
    assert result.retry_after_s == 7
    assert result.error_code == "20429"


def test_a_full_sender_queue_is_retryable_although_it_is_a_400(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(lambda r: Reply.json(400, json.dumps({
        "code": 21611, "message": "This 'From' number has exceeded the maximum number of "
        "queued messages"})))
    assert channel(server.url, http).send(sms()).status is SendStatus.RETRYABLE


def test_a_2xx_without_a_sid_is_not_taken_as_sent(
        stub: Callable[[Responder], StubServer], http: httpx.Client) -> None:
    server = stub(lambda r: Reply(200, "<html>captive portal</html>"))
    result = channel(server.url, http).send(sms())
    assert not result.ok


def test_an_email_is_refused_by_an_sms_channel(http: httpx.Client) -> None:
    email = Message(kind=ChannelKind.EMAIL, recipient="a@example.com", body="x", dedupe_key="k")
    with pytest.raises(ValueError, match="email message cannot go through a sms channel"):
        channel(closed_url(), http).send(email)


# ---------------------------------------------------------------- status callbacks


def test_signature_matches_twilios_documented_example() -> None:
    """The worked example of Twilio's webhook security page."""
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def _independent_signature(token: str, url: str, form: dict[str, str]) -> str:
    data = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
                            ).decode()


CALLBACK_URL = "https://shop.example/hooks/twilio/status?store=ja"
CALLBACK = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "undelivered",
            "ErrorCode": "30003", "To": "+8613912345678", "From": "+15005550006",
            "AccountSid": SID, "ApiVersion": "2010-04-01", "SmsStatus": "undelivered"}


def test_a_signed_status_callback_verifies_and_any_change_fails() -> None:
    signature = _independent_signature(TOKEN, CALLBACK_URL, CALLBACK)
    assert verify_signature(TOKEN, CALLBACK_URL, CALLBACK, signature)
    assert not verify_signature(TOKEN, CALLBACK_URL, CALLBACK | {"ErrorCode": "30005"},
                                signature)
    assert not verify_signature(TOKEN, CALLBACK_URL, CALLBACK | {"Extra": "1"}, signature)
    assert not verify_signature(TOKEN, CALLBACK_URL.replace("ja", "jb"), CALLBACK, signature)
    assert not verify_signature("other-token", CALLBACK_URL, CALLBACK, signature)
    assert not verify_signature(TOKEN, CALLBACK_URL, CALLBACK, None)
    assert not verify_signature(TOKEN, CALLBACK_URL, CALLBACK, signature[:-2])


def test_a_default_port_added_or_dropped_by_a_proxy_still_verifies() -> None:
    signature = _independent_signature(TOKEN, "https://shop.example:443/hooks/twilio", CALLBACK)
    assert verify_signature(TOKEN, "https://shop.example/hooks/twilio", CALLBACK, signature)
    signature = _independent_signature(TOKEN, "https://shop.example/hooks/twilio", CALLBACK)
    assert verify_signature(TOKEN, "https://shop.example:443/hooks/twilio", CALLBACK, signature)
    assert not verify_signature(TOKEN, "https://shop.example:8443/hooks/twilio", CALLBACK,
                                signature)


@pytest.mark.parametrize(("status", "expected"), [
    ("delivered", DeliveryStatus.DELIVERED),
    ("read", DeliveryStatus.DELIVERED),
    ("undelivered", DeliveryStatus.FAILED),
    ("failed", DeliveryStatus.FAILED),
    ("sent", DeliveryStatus.PENDING),
    ("queued", DeliveryStatus.PENDING),
])
def test_status_callbacks_map_to_delivered_failed_or_pending(
        status: str, expected: DeliveryStatus) -> None:
    report = parse_status_callback(CALLBACK | {"MessageStatus": status})
    assert report.status is expected
    assert report.provider_message_id == "SM" + "c" * 32
    assert report.provider == "twilio"


def test_a_failed_callback_keeps_twilios_error_code() -> None:
    report = parse_status_callback(CALLBACK)
    assert (report.status, report.error_code, report.recipient) == (
        DeliveryStatus.FAILED, "30003", "+8613912345678")


def test_a_callback_without_sid_is_refused() -> None:
    with pytest.raises(ValueError, match="MessageSid"):
        parse_status_callback({"MessageStatus": "delivered"})
