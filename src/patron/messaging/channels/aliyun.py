"""SMS through Alibaba Cloud Short Message Service (dysmsapi ``SendSms``), and its reports.

Aliyun does not send free text: every SMS is a template registered (and approved) in the
Aliyun console, named by a ``TemplateCode``, filled with ``TemplateParam`` (a JSON object of
strings), and prefixed by Aliyun with an approved signature (``SignName``, shown as 【…】).
So patron maps its template name (``receipt``, ``birthday`` …) to a TemplateCode in the
configuration, and sends the template's SMS parameters that the renderer produced (see
``patron.messaging.templates``); the rendered text is what the member will read, for the
message log and segment counts, but Aliyun builds the real text from its own template.

Requests use the classic RPC signature (SignatureVersion 1.0):

1. Take every parameter except ``Signature``, percent-encode names and values per the POP
   rules (RFC 3986: only ``A-Z a-z 0-9 - _ . ~`` stay as they are, so a space is ``%20``,
   ``*`` is ``%2A`` and ``~`` is kept), sort by name, join as ``name=value`` with ``&``.
2. ``StringToSign = "GET&" + encode("/") + "&" + encode(canonicalized query)``.
3. ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.

Which answers are worth a retry (``Code`` in the JSON body):

* ``OK`` - accepted; ``BizId`` identifies it in delivery reports.
* Flow control (``isv.BUSINESS_LIMIT_CONTROL``: too many messages to one number in a minute,
  hour or day; ``isv.DAY_LIMIT_CONTROL`` / ``isv.MONTH_LIMIT_CONTROL``: the account's own
  caps) and throttling or server errors - RETRYABLE, after an hour for the flow controls.
* Money (``isv.AMOUNT_NOT_ENOUGH``, ``isv.OUT_OF_SERVICE``: the account's balance ran out) -
  RETRYABLE after an hour: a receipt is still worth sending once the merchant tops up, and
  the worker's attempt limit stops the retries if nobody does. The reason says it plainly so
  the message log shows the owner what to fix.
* Everything else (an illegal number, a template or signature Aliyun does not accept,
  missing parameters, refused credentials, unknown codes) - PERMANENT: the same request will
  get the same answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from patron.core.clock import Clock, SystemClock
from patron.messaging.channels.base import (
    DEFAULT_TIMEOUT,
    ChannelKind,
    DeliveryReport,
    DeliveryStatus,
    HttpChannel,
    Message,
    SendResult,
    check_kind,
    classify_http_error,
    is_retryable_status,
    response_snippet,
    transport_failure,
)

PROVIDER = "aliyun"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"
HOUR_S = 3600.0
BEIJING = ZoneInfo("Asia/Shanghai")

#: Codes that mean "not now": wait a while (seconds, None = the worker's own backoff).
RETRYABLE_CODES: dict[str, float | None] = {
    "isv.BUSINESS_LIMIT_CONTROL": HOUR_S,
    "isv.DAY_LIMIT_CONTROL": HOUR_S,
    "isv.MONTH_LIMIT_CONTROL": HOUR_S,
    "isv.AMOUNT_NOT_ENOUGH": HOUR_S,
    "isv.OUT_OF_SERVICE": HOUR_S,
    "Throttling": None,
    "Throttling.User": None,
    "Throttling.Api": None,
    "isp.SYSTEM_ERROR": None,
    "isp.GATEWAY_ERROR": None,
    "ServiceUnavailable": None,
    "InternalError": None,
    "SignatureNonceUsed": None,  # a nonce collision: the next attempt draws a new one
}

_MONEY_CODES = frozenset({"isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE"})


def percent_encode(value: str) -> str:
    """POP percent-encoding: UTF-8, then everything but ``A-Za-z0-9-_.~`` as ``%XX``."""
    return quote(value, safe="-_.~", encoding="utf-8")


def canonicalized_query(params: Mapping[str, str]) -> str:
    """Parameters (without ``Signature``) sorted by name and encoded, joined with ``&``."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def string_to_sign(params: Mapping[str, str], method: str = "GET") -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonicalized_query(params))}"


def sign(params: Mapping[str, str], access_key_secret: str, method: str = "GET") -> str:
    """The ``Signature`` value for these parameters (not yet percent-encoded)."""
    key = (access_key_secret + "&").encode("utf-8")
    digest = hmac.new(key, string_to_sign(params, method).encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC, whole seconds: ``2017-07-12T02:42:19Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phone_number(e164: str) -> str:
    """Aliyun's form of a number: E.164 without the ``+`` (86… at home, 852… abroad)."""
    return e164.strip().removeprefix("+")


class AliyunSmsChannel(HttpChannel):
    """Sends SMS through one Aliyun account, by TemplateCode, under one approved SignName."""

    kind: ChannelKind = ChannelKind.SMS
    name: str = PROVIDER

    def __init__(self, *, access_key_id: str, access_key_secret: str, sign_name: str,
                 template_codes: Mapping[str, str], region_id: str = "cn-hangzhou",
                 endpoint: str = DEFAULT_ENDPOINT, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, clock: Clock | None = None,
                 nonce: Callable[[], str] | None = None) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("Aliyun SMS needs an AccessKey ID and secret")
        if not sign_name:
            raise ValueError("Aliyun SMS needs an approved SignName")
        super().__init__(client, timeout)
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._sign_name = sign_name
        self._template_codes = dict(template_codes)
        self._region_id = region_id
        self._endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self._clock: Clock = clock or SystemClock()
        self._nonce = nonce or (lambda: uuid.uuid4().hex)

    def params(self, message: Message, template_code: str) -> dict[str, str]:
        """Every request parameter but ``Signature``, for ``message``."""
        return {
            "AccessKeyId": self._access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": message.dedupe_key,
            "PhoneNumbers": phone_number(message.recipient),
            "RegionId": self._region_id,
            "SignName": self._sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(message.template_params), ensure_ascii=False,
                                        separators=(",", ":")),
            "Timestamp": timestamp(self._clock.now()),
            "Version": API_VERSION,
        }

    def signed_url(self, params: Mapping[str, str]) -> str:
        """The GET URL with the signature first, then the canonicalized query.

        Built by hand rather than by httpx so the query on the wire is byte for byte the one
        that was signed.
        """
        signature = sign(params, self._access_key_secret)
        return (f"{self._endpoint}?Signature={percent_encode(signature)}&"
                f"{canonicalized_query(params)}")

    def send(self, message: Message) -> SendResult:
        check_kind(self.kind, message)
        if not message.template:
            return SendResult.permanent(
                PROVIDER, "Aliyun SMS sends registered templates only; the message names none",
                error_code="template_missing")
        template_code = self._template_codes.get(message.template)
        if not template_code:
            return SendResult.permanent(
                PROVIDER, f"no Aliyun TemplateCode is configured for template "
                f"{message.template!r} (PATRON_ALIYUN_SMS_TEMPLATE_CODES)",
                error_code="template_not_mapped")
        url = self.signed_url(self.params(message, template_code))
        try:
            response = self._client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return transport_failure(PROVIDER, exc)
        return _result(response)


def _result(response: httpx.Response) -> SendResult:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return classify_http_error(
            PROVIDER, response,
            reason=f"Aliyun answered {response.status_code}: {response_snippet(response)}")
    code = str(payload.get("Code") or "")
    text = str(payload.get("Message") or "")
    if response.is_success and code == "OK":
        biz_id = payload.get("BizId")
        return SendResult.accepted(PROVIDER, str(biz_id) if biz_id else None,
                                   http_status=response.status_code)
    reason = f"{code}: {text}" if text else code or f"HTTP {response.status_code}"
    if code in _MONEY_CODES:
        reason = f"the Aliyun SMS account has no balance left ({reason})"
    if code in RETRYABLE_CODES:
        return SendResult.retry(PROVIDER, reason, error_code=code,
                                http_status=response.status_code,
                                retry_after_s=RETRYABLE_CODES[code])
    if is_retryable_status(response.status_code):  # a code we do not know, on a 5xx or 429
        return SendResult.retry(PROVIDER, reason, error_code=code or None,
                                http_status=response.status_code)
    return SendResult.permanent(PROVIDER, reason, error_code=code or None,
                                http_status=response.status_code)


# ---------------------------------------------------------------- delivery reports


def parse_reports(body: bytes | str | list[Any]) -> list[DeliveryReport]:
    """The SmsReport push (a JSON array; one request may carry many reports).

    ``success`` decides the status; ``err_code`` is kept (``DELIVERED`` on success, the
    carrier's code otherwise); ``out_id`` is our dedupe key. Aliyun expects the answer
    ``{"code": 0, "msg": "..."}`` with HTTP 200 and re-pushes otherwise, so a caller should
    answer only after storing the reports.
    """
    items = json.loads(body) if isinstance(body, bytes | str) else body
    if not isinstance(items, list):
        raise ValueError("an Aliyun SMS report is a JSON array")
    reports = []
    for item in items:
        if not isinstance(item, dict) or not item.get("biz_id"):
            raise ValueError("each Aliyun SMS report needs a biz_id")
        success = item.get("success")
        if isinstance(success, str):  # tolerate "true"/"false" from hand-built pushes
            success = success.lower() == "true"
        err_code = item.get("err_code") or None
        reports.append(DeliveryReport(
            provider=PROVIDER, provider_message_id=str(item["biz_id"]),
            status=DeliveryStatus.DELIVERED if success else DeliveryStatus.FAILED,
            error_code=None if success else err_code, error_message=item.get("err_msg") or None,
            recipient=item.get("phone_number") or None, reference=item.get("out_id") or None,
            reported_at=_report_time(item.get("report_time"))))
    return reports


#: What the report endpoint answers once the reports are stored.
REPORT_ACK = {"code": 0, "msg": "接收成功"}


def _report_time(value: object) -> datetime | None:
    """Report times are Beijing time without a zone (``2017-01-01 00:00:00``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        local = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return None
    return local.astimezone(UTC)
