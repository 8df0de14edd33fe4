"""SMS through Twilio's Programmable Messaging API, its status callbacks and their signature.

Sending is ``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic
auth (AccountSid:AuthToken) and a form body of ``To``, ``From`` or ``MessagingServiceSid``,
``Body`` and optionally ``StatusCallback``. A 201 answer carries the message ``sid``; an
error answer is JSON with Twilio's numeric ``code`` and a ``message``.

Twilio then POSTs status callbacks (``MessageSid``, ``MessageStatus``, ``ErrorCode``) signed
with ``X-Twilio-Signature``: base64 of HMAC-SHA1, keyed with the auth token, over the full
callback URL followed by every POST parameter's name and value, sorted by name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx

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
    response_snippet,
    retry_after_seconds,
    transport_failure,
)

PROVIDER = "twilio"
DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"

#: Twilio error codes that arrive with a 4xx but mean "not now": the sender's queue is full
#: (21611) or the account hit a concurrency / rate limit (20429, 14107).
RETRYABLE_CODES = frozenset({20429, 21611, 14107})

#: MessageStatus values of a status callback, in patron's terms.
_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


class TwilioChannel(HttpChannel):
    """Sends SMS through one Twilio account, from a number or a Messaging Service."""

    kind: ChannelKind = ChannelKind.SMS
    name: str = PROVIDER

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str | None = None,
                 messaging_service_sid: str | None = None, status_callback_url: str | None = None,
                 base_url: str = DEFAULT_BASE_URL, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio needs an account SID and an auth token")
        if not (from_number or messaging_service_sid):
            raise ValueError("Twilio needs a From number or a Messaging Service SID")
        super().__init__(client, timeout)
        self._account_sid = account_sid
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid
        self._status_callback_url = status_callback_url
        self._url = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    def form(self, message: Message) -> dict[str, str]:
        """The form fields Twilio gets for ``message``."""
        data = {"To": message.recipient, "Body": message.body}
        # A Messaging Service picks the sender itself (and handles opt-out keywords).
        if self._messaging_service_sid:
            data["MessagingServiceSid"] = self._messaging_service_sid
        else:
            assert self._from_number is not None
            data["From"] = self._from_number
        if self._status_callback_url:
            data["StatusCallback"] = self._status_callback_url
        return data

    def send(self, message: Message) -> SendResult:
        check_kind(self.kind, message)
        try:
            response = self._client.post(self._url, data=self.form(message), auth=self._auth,
                                         headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return transport_failure(PROVIDER, exc)
        if response.is_success:
            payload = _json_object(response)
            sid = payload.get("sid")
            if not isinstance(sid, str) or not sid:
                # 2xx without a sid: Twilio may have queued it; a retry could send it twice,
                # but without a sid we could never match its delivery report either.
                return SendResult.permanent(
                    PROVIDER, f"Twilio answered {response.status_code} without a message sid: "
                    f"{response_snippet(response)}", http_status=response.status_code)
            return SendResult.accepted(PROVIDER, sid, http_status=response.status_code)
        return _failure(response)


def _failure(response: httpx.Response) -> SendResult:
    payload = _json_object(response)
    code = payload.get("code")
    text = payload.get("message")
    reason = str(text) if text else response_snippet(response) or response.reason_phrase
    error_code = str(code) if code is not None else None
    if response.status_code in (401, 403):
        reason = f"Twilio refused the credentials: {reason}"
    if isinstance(code, int) and code in RETRYABLE_CODES:
        return SendResult.retry(PROVIDER, reason, error_code=error_code,
                                http_status=response.status_code,
                                retry_after_s=retry_after_seconds(response))
    return classify_http_error(PROVIDER, response, reason=reason, error_code=error_code)


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


# ---------------------------------------------------------------- status callbacks


def parse_status_callback(form: Mapping[str, str]) -> DeliveryReport:
    """A StatusCallback POST (already signature-checked) as a :class:`DeliveryReport`.

    ``queued``, ``sending``, ``sent``, ``accepted`` and ``scheduled`` are reported as
    ``PENDING``: Twilio sends a further callback when the message is delivered or not.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        raise ValueError("a Twilio status callback needs MessageSid and MessageStatus")
    error_code = form.get("ErrorCode") or None
    return DeliveryReport(provider=PROVIDER, provider_message_id=sid,
                          status=_STATUS.get(status.lower(), DeliveryStatus.PENDING),
                          error_code=error_code, error_message=form.get("ErrorMessage") or None,
                          recipient=form.get("To") or None)


def compute_signature(auth_token: str, url: str,
                      params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + name1 + value1 + ...)).

    Parameters are sorted by name (a repeated name keeps its values in sorted order), and the
    URL is the full URL Twilio called, query string included.
    """
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    payload = url + "".join(name + value for name, value in sorted(pairs))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(auth_token: str, url: str,
                     params: Mapping[str, str] | Iterable[tuple[str, str]],
                     signature: str | None) -> bool:
    """Whether ``X-Twilio-Signature`` matches this callback.

    Behind a proxy the URL we see may differ from the one Twilio called only by an explicit
    default port (Twilio's own libraries allow for that), so the URL is tried as given, with
    the port and without it. Comparison is constant-time.
    """
    if not signature:
        return False
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return any(hmac.compare_digest(compute_signature(auth_token, candidate, pairs), signature)
               for candidate in _url_variants(url))


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default_port is None or parts.hostname is None:
        return variants
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default_port}")))
    elif parts.port == default_port:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return variants
