"""E-mail through an SMTP relay (the merchant's mail provider, or a local MTA).

Each message becomes a MIME ``multipart/alternative`` with a plain-text part and, when the
template has one, an HTML part, built with :class:`email.message.EmailMessage` so Chinese
subjects and display names are encoded as RFC 2047 words and bodies as UTF-8.

Headers worth knowing about:

* ``Message-ID`` is derived from the message's dedupe key, so a retry of the same outbox
  message carries the same id and a receiving system can recognise the duplicate.
* ``List-Unsubscribe`` (and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, RFC 8058)
  when the message carries an unsubscribe URL: mailbox providers show an unsubscribe button
  and require it of bulk senders.

Connection security is chosen in the settings: ``starttls`` (port 587, the usual submission
setup; refused rather than silently downgraded when the server does not offer it), ``tls``
(implicit TLS, port 465) or ``none`` (a local relay on a trusted network). A connection is
opened per message: smtplib connections are not thread-safe, and a shop's volume does not
need pooling.

How SMTP answers map to results: 4xx replies and dropped connections are RETRYABLE; 5xx
replies (an unknown mailbox, a rejected sender, refused credentials) are PERMANENT.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import Literal

from patron.core.clock import Clock, SystemClock
from patron.messaging.channels.base import ChannelKind, Message, SendResult, check_kind

PROVIDER = "smtp"
SmtpSecurity = Literal["none", "starttls", "tls"]
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._+=-]{1,128}$")


class SmtpChannel:
    """Sends e-mail through one SMTP server with one sender address."""

    kind: ChannelKind = ChannelKind.EMAIL
    name: str = PROVIDER

    def __init__(self, *, host: str, from_address: str, port: int | None = None,
                 security: SmtpSecurity = "starttls", username: str | None = None,
                 password: str | None = None, from_name: str = "",
                 reply_to: str | None = None, envelope_from: str | None = None,
                 message_id_domain: str | None = None, timeout_s: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, local_hostname: str | None = None,
                 clock: Clock | None = None) -> None:
        if not host:
            raise ValueError("SMTP needs a host")
        if security not in DEFAULT_PORTS:
            raise ValueError(f"SMTP security must be one of {sorted(DEFAULT_PORTS)}")
        if username and password is None:
            raise ValueError("an SMTP username needs a password")
        self._host = host
        self._port = port or DEFAULT_PORTS[security]
        self._security = security
        self._username = username
        self._password = password
        self._sender = Address(display_name=from_name, addr_spec=from_address)
        self._reply_to = reply_to
        self._envelope_from = envelope_from or from_address
        self._message_id_domain = message_id_domain or self._sender.domain
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._clock: Clock = clock or SystemClock()

    def close(self) -> None:
        """Nothing to close: a connection lives only as long as one send."""

    def message_id(self, message: Message) -> str:
        """``<dedupe-key@domain>``; a key that is not a safe id-left is hashed first."""
        key = message.dedupe_key
        left = key if _SAFE_ID.match(key) else hashlib.sha256(key.encode()).hexdigest()[:40]
        return f"<{left}@{self._message_id_domain}>"

    def build(self, message: Message) -> EmailMessage:
        """The MIME message for ``message``; raises ``ValueError`` for an unusable address."""
        email = EmailMessage(policy=SMTP_POLICY)
        email["From"] = self._sender
        email["To"] = Address(display_name=message.recipient_name or "",
                              addr_spec=message.recipient.strip())
        if self._reply_to:
            email["Reply-To"] = self._reply_to
        email["Subject"] = message.subject
        email["Date"] = format_datetime(self._clock.now())
        email["Message-ID"] = self.message_id(message)
        if message.unsubscribe_url:
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(message.body, subtype="plain", charset="utf-8")
        if message.html_body:
            email.add_alternative(message.html_body, subtype="html", charset="utf-8")
        return email

    def send(self, message: Message) -> SendResult:
        check_kind(self.kind, message)
        try:
            email = self.build(message)
        except (ValueError, HeaderParseError, IndexError) as exc:
            return SendResult.permanent(PROVIDER, f"not a usable e-mail address "
                                        f"{message.recipient!r}: {exc}", error_code="address")
        try:
            connection = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            return _classify(exc)
        try:
            if self._security == "starttls":
                connection.starttls(context=self._context())
                connection.ehlo()
            if self._username:
                assert self._password is not None
                connection.login(self._username, self._password)
            connection.send_message(email, from_addr=self._envelope_from,
                                    to_addrs=[message.recipient.strip()])
        except (smtplib.SMTPException, OSError) as exc:
            return _classify(exc)
        finally:
            _quit(connection)
        return SendResult.sent(PROVIDER, str(email["Message-ID"]))

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self._security == "tls":
            return smtplib.SMTP_SSL(self._host, self._port, local_hostname=self._local_hostname,
                                    timeout=self._timeout_s, context=self._context())
        return smtplib.SMTP(self._host, self._port, local_hostname=self._local_hostname,
                            timeout=self._timeout_s)


def _quit(connection: smtplib.SMTP) -> None:
    """Say goodbye; a server that hangs up first does not undo a delivered message."""
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def _classify(exc: Exception) -> SendResult:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b"refused"))
        return _by_code(code, f"the recipient was refused: {_text(text)}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SendResult.permanent(PROVIDER, f"the SMTP server refused the credentials: "
                                    f"{_text(exc.smtp_error)}", error_code=str(exc.smtp_code))
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, _text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # STARTTLS, AUTH or SMTPUTF8 asked for and not offered: a setup problem, not bad luck.
        return SendResult.permanent(PROVIDER, f"the SMTP server does not support what the "
                                    f"settings require: {exc}", error_code="not_supported")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SendResult.permanent(PROVIDER, f"the SMTP server's certificate was not trusted: "
                                    f"{exc.verify_message}", error_code="certificate")
    if isinstance(exc, TimeoutError):
        return SendResult.retry(PROVIDER, "timed out talking to the SMTP server",
                                error_code="timeout")
    return SendResult.retry(PROVIDER, f"could not reach the SMTP server: {exc!s}",
                            error_code="connection")


def _by_code(code: int, text: str) -> SendResult:
    if 400 <= code < 500:
        return SendResult.retry(PROVIDER, f"{code} {text}", error_code=str(code))
    return SendResult.permanent(PROVIDER, f"{code} {text}", error_code=str(code))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
