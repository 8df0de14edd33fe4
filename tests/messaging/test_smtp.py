"""SMTP against a real aiosmtpd server on loopback: a Chinese e-mail with text and HTML
parts arrives intact, with List-Unsubscribe; refusals and credentials are classified."""

from __future__ import annotations

import email
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from patron.core.clock import FixedClock
from patron.messaging.channels import ChannelKind, Message, SendStatus
from patron.messaging.channels.smtp import SmtpChannel
from tests.messaging.stub import free_port


class Mailbox:
    """An aiosmtpd handler that keeps what it receives and can refuse recipients."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def received(self) -> EmailMessage:
        assert len(self.envelopes) == 1
        parsed = email.message_from_bytes(self.envelopes[0].content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"shop@example.com"
          and auth_data.password == b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


def start(controller: Controller) -> Controller:
    controller.start()
    return controller


@pytest.fixture
def smtp_server(mailbox: Mailbox) -> Iterator[Controller]:
    controller = start(Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                                  authenticator=authenticator, auth_require_tls=False))
    yield controller
    controller.stop()


def channel(controller: Controller, clock: FixedClock, **kwargs: Any) -> SmtpChannel:
    options: dict[str, Any] = {"security": "none", "from_name": "帕创茶铺",
                               "from_address": "hello@patron-tea.example"} | kwargs
    return SmtpChannel(host="127.0.0.1", port=controller.port, timeout_s=5, clock=clock,
                       **options)


UNSUBSCRIBE = ("https://patron-tea.example/u/eyJtIjoiMDFKQ1gyN0JHOFdOUzVXQk5QV0tXUFdQR0QiLCJj"
               "IjoiZW1haWwifQ.9c2a7b81d4e5f6")

HTML = "<p>李娜，您好：</p><p>生日快乐！<a href=\"https://patron-tea.example/m\">会员中心</a></p>"


def chinese_mail(**kwargs: Any) -> Message:
    fields: dict[str, Any] = {
        "kind": ChannelKind.EMAIL, "recipient": "li.na@example.com", "recipient_name": "李娜",
        "subject": "李娜，生日快乐！帕创茶铺为您准备了满200减30元券",
        "body": "李娜，您好：\n\n生日快乐！\n\n退订：" + UNSUBSCRIBE, "html_body": HTML,
        "dedupe_key": "01JCX27BG8WNS5WBNPWKWPWPGD", "unsubscribe_url": UNSUBSCRIBE}
    return Message(**(fields | kwargs))


def test_a_chinese_email_arrives_with_text_html_and_list_unsubscribe(
        smtp_server: Controller, mailbox: Mailbox, clock: FixedClock) -> None:
    result = channel(smtp_server, clock).send(chinese_mail())
    assert result.status is SendStatus.SENT, result.reason
    assert result.provider_message_id == "<01JCX27BG8WNS5WBNPWKWPWPGD@patron-tea.example>"

    envelope = mailbox.envelopes[0]
    assert envelope.mail_from == "hello@patron-tea.example"
    assert envelope.rcpt_tos == ["li.na@example.com"]
    raw_headers = envelope.content.split(b"\r\n\r\n", 1)[0]
    raw_headers.decode("ascii")  # every header line is 7-bit: RFC 2047 words for Chinese

    received = mailbox.received()
    assert received["Subject"] == "李娜，生日快乐！帕创茶铺为您准备了满200减30元券"
    assert received["From"].addresses[0].display_name == "帕创茶铺"
    assert received["From"].addresses[0].addr_spec == "hello@patron-tea.example"
    assert received["To"].addresses[0].display_name == "李娜"
    assert received["Message-ID"] == "<01JCX27BG8WNS5WBNPWKWPWPGD@patron-tea.example>"
    assert received["Date"].datetime == clock.now()
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    assert received.get_content_type() == "multipart/alternative"
    text_part = received.get_body(("plain",))
    html_part = received.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content_charset() == "utf-8"
    # MIME's canonical text form ends lines with CRLF (RFC 2046); compare the words.
    assert text_part.get_content().replace("\r\n", "\n").rstrip("\n") == chinese_mail().body
    assert html_part.get_content().replace("\r\n", "\n").rstrip("\n") == HTML


def test_without_an_unsubscribe_url_there_is_no_list_unsubscribe(
        smtp_server: Controller, mailbox: Mailbox, clock: FixedClock) -> None:
    channel(smtp_server, clock).send(chinese_mail(unsubscribe_url=None, html_body=None))
    received = mailbox.received()
    assert received["List-Unsubscribe"] is None
    assert received["List-Unsubscribe-Post"] is None
    assert received.get_content_type() == "text/plain"


def test_a_retry_carries_the_same_message_id(smtp_server: Controller, mailbox: Mailbox,
                                            clock: FixedClock) -> None:
    smtp = channel(smtp_server, clock)
    first, second = smtp.send(chinese_mail()), smtp.send(chinese_mail())
    assert first.provider_message_id == second.provider_message_id
    ids = {email.message_from_bytes(e.content)["Message-ID"] for e in mailbox.envelopes}
    assert len(ids) == 1


def test_login_with_the_right_password_sends(smtp_server: Controller, mailbox: Mailbox,
                                             clock: FixedClock) -> None:
    result = channel(smtp_server, clock, username="shop@example.com",
                     password="s3cret").send(chinese_mail())
    assert result.status is SendStatus.SENT
    assert len(mailbox.envelopes) == 1


def test_a_refused_login_is_permanent(smtp_server: Controller, mailbox: Mailbox,
                                      clock: FixedClock) -> None:
    result = channel(smtp_server, clock, username="shop@example.com",
                     password="wrong").send(chinese_mail())
    assert result.status is SendStatus.PERMANENT
    assert result.error_code == "535"
    assert "credentials" in result.reason
    assert mailbox.envelopes == []


def test_an_unknown_mailbox_is_permanent(smtp_server: Controller, mailbox: Mailbox,
                                         clock: FixedClock) -> None:
    mailbox.rcpt_reply = "550 5.1.1 <li.na@example.com>: user unknown"
    result = channel(smtp_server, clock).send(chinese_mail())
    assert (result.status, result.error_code) == (SendStatus.PERMANENT, "550")
    assert "user unknown" in result.reason


def test_a_greylisting_4xx_is_retryable(smtp_server: Controller, mailbox: Mailbox,
                                        clock: FixedClock) -> None:
    mailbox.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    result = channel(smtp_server, clock).send(chinese_mail())
    assert (result.status, result.error_code) == (SendStatus.RETRYABLE, "451")


def test_no_server_listening_is_retryable(clock: FixedClock) -> None:
    smtp = SmtpChannel(host="127.0.0.1", port=free_port(), security="none",
                       from_address="hello@patron-tea.example", timeout_s=2, clock=clock)
    result = smtp.send(chinese_mail())
    assert (result.status, result.error_code) == (SendStatus.RETRYABLE, "connection")


def test_starttls_required_but_not_offered_is_refused_not_downgraded(
        smtp_server: Controller, mailbox: Mailbox, clock: FixedClock) -> None:
    result = channel(smtp_server, clock, security="starttls").send(chinese_mail())
    assert result.status is SendStatus.PERMANENT
    assert result.error_code == "not_supported"
    assert mailbox.envelopes == []


def test_an_unusable_address_is_permanent_without_connecting(clock: FixedClock) -> None:
    smtp = SmtpChannel(host="127.0.0.1", port=free_port(), security="none",
                       from_address="hello@patron-tea.example", clock=clock)
    result = smtp.send(chinese_mail(recipient="not an address"))
    assert (result.status, result.error_code) == (SendStatus.PERMANENT, "address")


# ---------------------------------------------------------------- TLS, with a throwaway CA


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_starttls_with_login_sends(certificate: tuple[Path, Path], mailbox: Mailbox,
                                   clock: FixedClock) -> None:
    controller = start(Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                                  tls_context=server_context(certificate),
                                  require_starttls=True, authenticator=authenticator))
    try:
        trusted = ssl.create_default_context(cafile=str(certificate[0]))
        result = channel(controller, clock, security="starttls", ssl_context=trusted,
                         username="shop@example.com", password="s3cret").send(chinese_mail())
    finally:
        controller.stop()
    assert result.status is SendStatus.SENT, result.reason
    assert mailbox.received()["Subject"].startswith("李娜")


def test_an_untrusted_certificate_is_permanent(certificate: tuple[Path, Path],
                                               mailbox: Mailbox, clock: FixedClock) -> None:
    controller = start(Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                                  tls_context=server_context(certificate),
                                  require_starttls=True))
    try:
        result = channel(controller, clock, security="starttls").send(chinese_mail())
    finally:
        controller.stop()
    assert (result.status, result.error_code) == (SendStatus.PERMANENT, "certificate")
    assert mailbox.envelopes == []


def test_implicit_tls_sends(certificate: tuple[Path, Path], mailbox: Mailbox,
                            clock: FixedClock) -> None:
    controller = start(Controller(mailbox, hostname="127.0.0.1", port=free_port(),
                                  ssl_context=server_context(certificate)))
    try:
        trusted = ssl.create_default_context(cafile=str(certificate[0]))
        result = channel(controller, clock, security="tls", ssl_context=trusted).send(
            chinese_mail())
    finally:
        controller.stop()
    assert result.status is SendStatus.SENT, result.reason
    assert len(mailbox.envelopes) == 1
