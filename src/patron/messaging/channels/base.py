"""What every channel shares: the outgoing message, the result of a send, the channel protocol.

Design overview: a channel hands one :class:`Message` to one provider and says what happened
in a :class:`SendResult`; it never raises for a provider's answer. The outbox worker (which
runs channels in threads, so channels are synchronous) decides from the result alone:

* ``ACCEPTED`` - the provider queued it; a delivery report may follow (SMS).
* ``SENT`` - handed over as far as we will ever know (an SMTP relay said 250, an integrator's
  endpoint said 2xx, the development log file has the line).
* ``RETRYABLE`` - nothing was delivered and trying again later can help: a timeout, a dropped
  connection, HTTP 5xx, 408 or 429, a provider's rate limit. ``retry_after_s`` carries the
  provider's hint when it gave one.
* ``PERMANENT`` - trying again cannot help: a bad number, refused credentials, a template the
  provider does not know. ``reason`` says why, for the person reading the message log.

Every result names the provider's own error code when there is one, so a support person can
look it up in the provider's documentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

import httpx

#: Connect quickly or give up (the worker retries); allow a slow provider a little longer.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
USER_AGENT = "patron-messaging/1"
MAX_REASON_CHARS = 500


class ChannelKind(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    WEBHOOK = "webhook"


class SendStatus(StrEnum):
    ACCEPTED = "accepted"
    SENT = "sent"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class DeliveryStatus(StrEnum):
    """What a provider's delivery report says about a message it accepted earlier."""

    DELIVERED = "delivered"
    FAILED = "failed"
    PENDING = "pending"  # an intermediate report (queued, sending, sent): not final yet


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message to one recipient, already rendered.

    ``recipient`` is an E.164 phone number (SMS), an e-mail address, or an endpoint URL
    (webhook). ``dedupe_key`` is the outbox message's stable id: providers that accept a
    reference get it (Aliyun ``OutId``, the gateway's ``reference``, the webhook's
    ``Patron-Delivery``, the e-mail's ``Message-ID``) so a retry is recognisable as the same
    message. ``template`` and ``template_params`` are for providers that send by registered
    template rather than free text (Aliyun SMS).
    """

    kind: ChannelKind
    recipient: str
    body: str
    dedupe_key: str
    subject: str = ""
    html_body: str | None = None
    recipient_name: str | None = None
    unsubscribe_url: str | None = None
    template: str | None = None
    template_params: Mapping[str, str] = field(default_factory=dict)
    event: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.recipient.strip():
            raise ValueError("a message needs a recipient")
        if not self.dedupe_key.strip():
            raise ValueError("a message needs a dedupe_key (the outbox message id)")
        if self.kind is ChannelKind.WEBHOOK and not self.event:
            raise ValueError("a webhook message needs an event type")


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """The outcome of one send; see the module docstring for what each status means."""

    status: SendStatus
    provider: str
    provider_message_id: str | None = None
    reason: str = ""
    error_code: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in (SendStatus.ACCEPTED, SendStatus.SENT)

    @property
    def retryable(self) -> bool:
        return self.status is SendStatus.RETRYABLE

    @classmethod
    def accepted(cls, provider: str, provider_message_id: str | None, *,
                 http_status: int | None = None) -> SendResult:
        return cls(status=SendStatus.ACCEPTED, provider=provider,
                   provider_message_id=provider_message_id, http_status=http_status)

    @classmethod
    def sent(cls, provider: str, provider_message_id: str | None, *,
             http_status: int | None = None) -> SendResult:
        return cls(status=SendStatus.SENT, provider=provider,
                   provider_message_id=provider_message_id, http_status=http_status)

    @classmethod
    def retry(cls, provider: str, reason: str, *, error_code: str | None = None,
              http_status: int | None = None, retry_after_s: float | None = None) -> SendResult:
        return cls(status=SendStatus.RETRYABLE, provider=provider, reason=_clip(reason),
                   error_code=error_code, http_status=http_status, retry_after_s=retry_after_s)

    @classmethod
    def permanent(cls, provider: str, reason: str, *, error_code: str | None = None,
                  http_status: int | None = None) -> SendResult:
        return cls(status=SendStatus.PERMANENT, provider=provider, reason=_clip(reason),
                   error_code=error_code, http_status=http_status)


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    """One delivery-status report from an SMS provider, in patron's terms.

    ``reference`` is our ``dedupe_key`` when the provider echoes it back (Aliyun ``out_id``).
    """

    provider: str
    provider_message_id: str
    status: DeliveryStatus
    error_code: str | None = None
    error_message: str | None = None
    recipient: str | None = None
    reference: str | None = None
    reported_at: datetime | None = None


@runtime_checkable
class Channel(Protocol):
    """Sends messages of one kind through one provider; safe to call from worker threads."""

    @property
    def kind(self) -> ChannelKind: ...

    @property
    def name(self) -> str: ...

    def send(self, message: Message) -> SendResult: ...

    def close(self) -> None: ...


class WrongChannel(ValueError):
    """A message of one kind was handed to a channel of another: a bug in the caller."""


def check_kind(channel_kind: ChannelKind, message: Message) -> None:
    if message.kind is not channel_kind:
        raise WrongChannel(f"a {message.kind} message cannot go through a {channel_kind} channel")


def new_http_client(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> httpx.Client:
    """The HTTP client a channel uses when none is injected: bounded time, no redirects.

    Redirects are not followed: a provider API that redirects is misconfigured, and a webhook
    endpoint must not bounce a signed body to another host.
    """
    return httpx.Client(timeout=timeout, follow_redirects=False,
                        headers={"User-Agent": USER_AGENT})


class HttpChannel:
    """Base of channels that speak HTTP: owns (or borrows) an ``httpx.Client``."""

    def __init__(self, client: httpx.Client | None, timeout: httpx.Timeout | float) -> None:
        self._owns_client = client is None
        self._client = client if client is not None else new_http_client(timeout)

    def close(self) -> None:
        """Close the client if this channel created it; an injected one belongs to the caller."""
        if self._owns_client:
            self._client.close()


def transport_failure(provider: str, exc: httpx.HTTPError) -> SendResult:
    """A request that never got an HTTP answer: always worth another try later.

    A timeout after the request was written may mean the provider did accept it; the retry
    carries the same dedupe key so providers that honour a reference can drop the duplicate.
    """
    if isinstance(exc, httpx.TimeoutException):
        return SendResult.retry(provider, f"timed out talking to {provider}: {type(exc).__name__}",
                                error_code="timeout")
    return SendResult.retry(provider, f"could not reach {provider}: {exc!s}",
                            error_code="connection")


def is_retryable_status(status_code: int) -> bool:
    """HTTP statuses that say "not now" rather than "never": 408, 425, 429 and every 5xx."""
    return status_code in (408, 425, 429) or status_code >= 500


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` header as seconds (it may be a number or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_http_error(provider: str, response: httpx.Response, *, reason: str,
                        error_code: str | None = None) -> SendResult:
    """A non-2xx answer as a result: retry on 408/425/429/5xx, give up on other 4xx."""
    if is_retryable_status(response.status_code):
        return SendResult.retry(provider, reason, error_code=error_code,
                                http_status=response.status_code,
                                retry_after_s=retry_after_seconds(response))
    return SendResult.permanent(provider, reason, error_code=error_code,
                                http_status=response.status_code)


def response_snippet(response: httpx.Response, limit: int = 200) -> str:
    """The start of a response body, for a failure reason a person can read."""
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _clip(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
