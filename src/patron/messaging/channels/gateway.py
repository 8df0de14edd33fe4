"""SMS through a generic HTTP gateway: for a local carrier or an in-house relay.

Many regional SMS resellers (and the relays merchants already run) take a small JSON POST;
this channel speaks the simplest such contract so a deployment can plug one in without code:

    POST <url>   Authorization: Bearer <token>   Content-Type: application/json
    {"to": "+8613912345678", "text": "…", "reference": "<patron's dedupe key>"}

Any 2xx means accepted. If the answer is a JSON object with an ``id`` (or ``message_id``),
that is the provider's message id; otherwise the reference stands in for it. 408, 429 and
5xx are retried, other statuses are permanent.
"""

from __future__ import annotations

import httpx

from patron.messaging.channels.base import (
    DEFAULT_TIMEOUT,
    ChannelKind,
    HttpChannel,
    Message,
    SendResult,
    check_kind,
    classify_http_error,
    response_snippet,
    transport_failure,
)

PROVIDER = "gateway"


class SmsGatewayChannel(HttpChannel):
    """Posts each SMS as JSON to one configured URL with a bearer token."""

    kind: ChannelKind = ChannelKind.SMS
    name: str = PROVIDER

    def __init__(self, *, url: str, token: str | None = None, client: httpx.Client | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> None:
        if not url:
            raise ValueError("the SMS gateway needs a URL")
        super().__init__(client, timeout)
        self._url = url
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def send(self, message: Message) -> SendResult:
        check_kind(self.kind, message)
        payload = {"to": message.recipient, "text": message.body,
                   "reference": message.dedupe_key}
        try:
            response = self._client.post(self._url, json=payload, headers=self._headers)
        except httpx.HTTPError as exc:
            return transport_failure(PROVIDER, exc)
        if response.is_success:
            return SendResult.accepted(PROVIDER, _message_id(response) or message.dedupe_key,
                                       http_status=response.status_code)
        return classify_http_error(
            PROVIDER, response,
            reason=f"the SMS gateway answered {response.status_code}: {response_snippet(response)}")


def _message_id(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    value = payload.get("id") or payload.get("message_id")
    return str(value) if value else None
