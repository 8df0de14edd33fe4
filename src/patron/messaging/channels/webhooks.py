"""Signed outgoing webhooks: how integrators (a POS, a shop front) hear about patron's events.

Each delivery is ``POST <endpoint>`` with a JSON body and three headers:

* ``Patron-Event``: the event type, e.g. ``sale.completed``.
* ``Patron-Delivery``: the delivery id (the outbox message id). A retry carries the same id,
  so an integrator can drop a delivery it has already processed.
* ``Patron-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: keyed with the
  endpoint's secret. Binding the timestamp into the MAC lets a receiver refuse replays older
  than a tolerance; while a secret is being rotated the header carries one ``v1`` per secret.
  This is the scheme Stripe uses, so integrators' existing verification code fits.

Integrators verify with :func:`verify_signature` (or the same few lines in their language):
recompute the HMAC over the raw body bytes exactly as received, compare in constant time,
check the timestamp is recent.

Which answers are retried: any 2xx is success. ``410 Gone`` (the integrator removed the
endpoint) and ``413`` (the body will never fit) are permanent. Every other answer, 4xx
included, is retried: an integrator's endpoint that answers 401 or 404 today is usually being
deployed or reconfigured, and the event must still reach it once it is fixed; the worker's
attempt limit bounds the retries. Redirects are not followed: a signed body goes only to the
URL the integrator registered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import httpx

from patron.core.clock import Clock, SystemClock
from patron.messaging.channels.base import (
    DEFAULT_TIMEOUT,
    ChannelKind,
    HttpChannel,
    Message,
    SendResult,
    check_kind,
    response_snippet,
    retry_after_seconds,
    transport_failure,
)

PROVIDER = "webhook"
SIGNATURE_HEADER = "Patron-Signature"
EVENT_HEADER = "Patron-Event"
DELIVERY_HEADER = "Patron-Delivery"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
PERMANENT_STATUSES = frozenset({410, 413})

SecretSource = str | Callable[[Message], str | Sequence[str]]


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + body`` keyed with ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: str | Sequence[str], body: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<sig>[,v1=<sig>…]``: one ``v1`` per secret (several while rotating)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or not all(keys):
        raise ValueError("a webhook needs a non-empty signing secret")
    parts = [f"t={timestamp}"] + [f"{SCHEME}={compute_signature(k, timestamp, body)}" for k in keys]
    return ",".join(parts)


def verify_signature(secret: str, header: str | None, body: bytes | str,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, *,
                     now: float | None = None) -> bool:
    """Whether ``header`` is a valid ``Patron-Signature`` for ``body`` under ``secret``.

    ``body`` must be the raw request body as received (re-serialising parsed JSON changes the
    bytes and breaks the signature). A signature older or newer than ``tolerance_s`` seconds
    is refused, so a captured request cannot be replayed later. ``now`` is for tests.
    """
    if not header or not secret:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = compute_signature(secret, timestamp, raw)
    # Compare against every candidate (no early exit), so timing says nothing about which.
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    return any(matches)


def event_body(*, event: str, delivery_id: str, created_at: datetime,
               data: Mapping[str, object]) -> str:
    """The JSON envelope patron sends: ``{"id", "type", "created_at", "data"}``.

    Compact and with sorted keys, so the same event always serialises to the same bytes.
    """
    envelope = {"id": delivery_id, "type": event, "created_at": created_at.isoformat(),
                "data": data}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      default=str)


class WebhookChannel(HttpChannel):
    """Delivers signed events to integrators' endpoints (``message.recipient`` is the URL).

    ``secret`` is one secret for every endpoint, or a function giving the secret(s) of the
    endpoint a message goes to (the endpoint table lives with the caller).
    """

    kind: ChannelKind = ChannelKind.WEBHOOK
    name: str = PROVIDER

    def __init__(self, *, secret: SecretSource, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 clock: Clock | None = None) -> None:
        if isinstance(secret, str) and not secret:
            raise ValueError("webhooks need a signing secret")
        super().__init__(client, timeout)
        self._secret = secret
        self._clock: Clock = clock or SystemClock()

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        """The headers of one delivery, the signature computed now."""
        secrets = self._secret(message) if callable(self._secret) else self._secret
        timestamp = int(self._clock.now().timestamp())
        return {
            "Content-Type": "application/json; charset=utf-8",
            EVENT_HEADER: message.event or "",
            DELIVERY_HEADER: message.dedupe_key,
            SIGNATURE_HEADER: signature_header(secrets, body, timestamp),
        }

    def send(self, message: Message) -> SendResult:
        check_kind(self.kind, message)
        body = message.body.encode("utf-8")
        try:
            response = self._client.post(message.recipient, content=body,
                                         headers=self.headers(message, body))
        except httpx.HTTPError as exc:
            return transport_failure(PROVIDER, exc)
        if response.is_success:
            return SendResult.sent(PROVIDER, message.dedupe_key, http_status=response.status_code)
        reason = f"the endpoint answered {response.status_code}: {response_snippet(response)}"
        if response.status_code in PERMANENT_STATUSES:
            return SendResult.permanent(PROVIDER, reason, http_status=response.status_code)
        return SendResult.retry(PROVIDER, reason, http_status=response.status_code,
                                retry_after_s=retry_after_seconds(response))
