"""Aliyun SMS: the RPC signature as Alibaba documents it, checked by an independent
implementation on a loopback stand-in, the answer codes, and the delivery reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
import pytest

from patron.core.clock import FixedClock
from patron.messaging.channels import ChannelKind, DeliveryStatus, Message, SendStatus
from patron.messaging.channels.aliyun import (
    AliyunSmsChannel,
    parse_reports,
    percent_encode,
    sign,
    string_to_sign,
)
from tests.messaging.stub import NOW, Recorded, Reply, Responder, StubServer

KEY_ID = "LTAI5tTestKeyId"
SECRET = "testSecret/+="
SIGN_NAME = "帕创茶铺"

# The example of Alibaba Cloud's SMS "signature method" page (SignatureVersion 1.0).
DOC_PARAMS = {
    "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
    "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}', "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
DOC_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def pop_encode(value: str) -> str:
    """An independent POP encoder: byte by byte, unreserved characters kept, rest %XX."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in value.encode("utf-8"))


def independent_signature(params: dict[str, str], secret: str) -> str:
    canonical = "&".join(f"{pop_encode(k)}={pop_encode(params[k])}" for k in sorted(params))
    to_sign = "GET&%2F&" + pop_encode(canonical)
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_signature_matches_alibabas_documented_example() -> None:
    assert sign(DOC_PARAMS, "testSecret") == DOC_SIGNATURE
    assert independent_signature(DOC_PARAMS, "testSecret") == DOC_SIGNATURE


def test_percent_encoding_follows_the_pop_rules() -> None:
    assert percent_encode("a b*c~d+e/f") == "a%20b%2Ac~d%2Be%2Ff"
    assert percent_encode("阿") == "%E9%98%BF"
    assert string_to_sign({"b": "2", "a": "1 1"}) == "GET&%2F&a%3D1%25201%26b%3D2"


def parse_raw_query(query: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in query.split("&")]
    return {unquote(k): unquote(v) for k, v in pairs}


def aliyun_like(request: Recorded) -> Reply:
    """Checks the request as the SMS endpoint does, then answers with a BizId."""
    assert request.method == "GET"
    assert request.path == "/"
    params = parse_raw_query(request.query)
    signature = params.pop("Signature")
    if signature != independent_signature(params, SECRET):
        return Reply.json(400, json.dumps({"Code": "SignatureDoesNotMatch", "Message":
                                           "Specified signature is not matched with our "
                                           "calculation.", "RequestId": "R1"}))
    assert params["Action"] == "SendSms"
    assert params["Version"] == "2017-05-25"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["SignatureVersion"] == "1.0"
    assert params["Format"] == "JSON"
    assert params["AccessKeyId"] == KEY_ID
    assert params["SignName"] == SIGN_NAME
    datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert params["SignatureNonce"]
    json.loads(params["TemplateParam"])
    return Reply.json(200, json.dumps({"Code": "OK", "Message": "OK",
                                       "BizId": "900619746936498440^0", "RequestId": "R2"}))


def channel(url: str, client: httpx.Client, clock: FixedClock) -> AliyunSmsChannel:
    return AliyunSmsChannel(access_key_id=KEY_ID, access_key_secret=SECRET, sign_name=SIGN_NAME,
                            template_codes={"receipt": "SMS_465300123",
                                            "birthday": "SMS_465300124"},
                            endpoint=url, client=client, clock=clock)


def receipt_sms(params: dict[str, str] | None = None) -> Message:
    return Message(kind=ChannelKind.SMS, recipient="+8613912345678", dedupe_key="msg-42",
                   body="【帕创茶铺】李娜您好…", template="receipt",
                   template_params=params or {"name": "李娜", "amount": "¥180.00",
                                              "note": "a b*c~d+e&f=g/h"})


def test_send_is_signed_so_an_independent_verifier_accepts_it(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    server = stub(aliyun_like)
    result = channel(server.url, http, clock).send(receipt_sms())
    server.check()
    assert result.status is SendStatus.ACCEPTED, result.reason
    assert result.provider_message_id == "900619746936498440^0"
    params = parse_raw_query(server.requests[0].query)
    assert params["PhoneNumbers"] == "8613912345678"
    assert params["TemplateCode"] == "SMS_465300123"
    assert json.loads(params["TemplateParam"]) == {"name": "李娜", "amount": "¥180.00",
                                                   "note": "a b*c~d+e&f=g/h"}
    assert params["Timestamp"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert params["OutId"] == "msg-42"
    assert params["RegionId"] == "cn-hangzhou"


def test_the_query_on_the_wire_is_the_one_that_was_signed(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    """No '+' for spaces, '*' encoded, '~' kept: as the POP rules say."""
    server = stub(aliyun_like)
    channel(server.url, http, clock).send(receipt_sms())
    raw = server.requests[0].query
    assert "+" not in raw
    assert "*" not in raw
    assert "%2A" in raw
    assert "~" in raw and "%7E" not in raw
    assert raw.startswith("Signature=")


def test_every_request_draws_a_new_nonce(stub: Callable[[Responder], StubServer],
                                         http: httpx.Client, clock: FixedClock) -> None:
    server = stub(aliyun_like)
    sender = channel(server.url, http, clock)
    sender.send(receipt_sms())
    sender.send(receipt_sms())
    nonces = {parse_raw_query(r.query)["SignatureNonce"] for r in server.requests}
    assert len(nonces) == 2


def test_a_wrong_secret_is_refused_by_the_verifier_and_is_permanent(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    server = stub(aliyun_like)
    sender = AliyunSmsChannel(access_key_id=KEY_ID, access_key_secret="not-the-secret",
                              sign_name=SIGN_NAME, template_codes={"receipt": "SMS_1"},
                              endpoint=server.url, client=http, clock=clock)
    result = sender.send(receipt_sms())
    assert result.status is SendStatus.PERMANENT
    assert result.error_code == "SignatureDoesNotMatch"


def test_a_template_without_an_aliyun_code_fails_before_any_request(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    server = stub(aliyun_like)
    message = Message(kind=ChannelKind.SMS, recipient="+8613912345678", dedupe_key="m",
                      body="…", template="winback")
    result = channel(server.url, http, clock).send(message)
    assert result.status is SendStatus.PERMANENT
    assert "winback" in result.reason and "PATRON_ALIYUN_SMS_TEMPLATE_CODES" in result.reason
    assert server.requests == []


@pytest.mark.parametrize(("code", "status", "retry_after"), [
    ("isv.MOBILE_NUMBER_ILLEGAL", SendStatus.PERMANENT, None),
    ("isv.TEMPLATE_MISSING_PARAMETERS", SendStatus.PERMANENT, None),
    ("isv.SMS_SIGNATURE_ILLEGAL", SendStatus.PERMANENT, None),
    ("isv.BLACK_KEY_CONTROL_LIMIT", SendStatus.PERMANENT, None),
    ("isv.SOMETHING_NEW", SendStatus.PERMANENT, None),
    ("isv.BUSINESS_LIMIT_CONTROL", SendStatus.RETRYABLE, 3600.0),
    ("isv.DAY_LIMIT_CONTROL", SendStatus.RETRYABLE, 3600.0),
    ("isv.AMOUNT_NOT_ENOUGH", SendStatus.RETRYABLE, 3600.0),
    ("isv.OUT_OF_SERVICE", SendStatus.RETRYABLE, 3600.0),
    ("Throttling.User", SendStatus.RETRYABLE, None),
    ("isp.SYSTEM_ERROR", SendStatus.RETRYABLE, None),
])
def test_answer_codes_are_classified(stub: Callable[[Responder], StubServer],
                                     http: httpx.Client, clock: FixedClock, code: str,
                                     status: SendStatus, retry_after: float | None) -> None:
    server = stub(lambda r: Reply.json(200, json.dumps({"Code": code, "Message": "msg",
                                                        "RequestId": "R"})))
    result = channel(server.url, http, clock).send(receipt_sms())
    assert (result.status, result.error_code, result.retry_after_s) == (status, code,
                                                                        retry_after)


def test_an_empty_balance_says_so_plainly(stub: Callable[[Responder], StubServer],
                                          http: httpx.Client, clock: FixedClock) -> None:
    server = stub(lambda r: Reply.json(200, json.dumps({"Code": "isv.AMOUNT_NOT_ENOUGH",
                                                        "Message": "账户余额不足"})))
    result = channel(server.url, http, clock).send(receipt_sms())
    assert "no balance left" in result.reason and "账户余额不足" in result.reason


def test_a_server_error_with_an_unknown_code_is_retryable(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    server = stub(lambda r: Reply.json(503, json.dumps({"Code": "ServiceBusy"})))
    assert channel(server.url, http, clock).send(receipt_sms()).status is SendStatus.RETRYABLE


# ---------------------------------------------------------------- delivery reports


def test_reports_parse_from_alibabas_documented_example() -> None:
    body = json.dumps([
        {"phone_number": "1381111****", "send_time": "2017-01-01 00:00:00",
         "report_time": "2017-01-01 00:00:00", "success": True, "err_code": "DELIVERED",
         "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "12345", "out_id": "67890"},
        {"phone_number": "1391111****", "send_time": "2017-01-01 00:00:00",
         "report_time": "2017-01-01 00:00:05", "success": False, "err_code": "MK:0001",
         "err_msg": "停机", "sms_size": "1", "biz_id": "12346", "out_id": "67891"},
    ], ensure_ascii=False).encode()
    delivered, failed = parse_reports(body)
    assert (delivered.provider_message_id, delivered.status, delivered.error_code,
            delivered.reference) == ("12345", DeliveryStatus.DELIVERED, None, "67890")
    assert delivered.reported_at == datetime(2016, 12, 31, 16, 0, tzinfo=UTC)
    assert (failed.status, failed.error_code, failed.error_message) == (
        DeliveryStatus.FAILED, "MK:0001", "停机")


def test_a_report_that_is_not_an_array_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON array"):
        parse_reports(b'{"biz_id": "1"}')
