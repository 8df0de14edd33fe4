"""Channel settings from the environment, channels built from them, the development log
channel, and one message end to end: rendered, built from settings, signed, verified."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from patron.core.clock import FixedClock
from patron.messaging.channels import (
    AliyunSmsChannel,
    ChannelKind,
    ChannelNotConfigured,
    LogFileChannel,
    Message,
    SendStatus,
    SmsGatewayChannel,
    SmtpChannel,
    TwilioChannel,
    WebhookChannel,
    build_channels,
)
from patron.messaging.config import ChannelSettings
from patron.messaging.templates import preview
from tests.messaging.stub import Recorded, Reply, Responder, StubServer
from tests.messaging.test_aliyun import independent_signature, parse_raw_query


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PATRON_* variable or .env file of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("PATRON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_defaults_log_everything_and_need_no_account() -> None:
    settings = ChannelSettings()
    assert (settings.sms_provider, settings.email_provider, settings.webhook_provider) == (
        "log", "log", "log")
    channels = build_channels(settings)
    try:
        assert all(isinstance(channels.get(kind), LogFileChannel) for kind in ChannelKind)
    finally:
        channels.close()


def test_aliyun_settings_are_read_from_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATRON_SMS_PROVIDER", "aliyun")
    monkeypatch.setenv("PATRON_ALIYUN_SMS_ACCESS_KEY_ID", "LTAI5t")
    monkeypatch.setenv("PATRON_ALIYUN_SMS_ACCESS_KEY_SECRET", "s3cret")
    monkeypatch.setenv("PATRON_ALIYUN_SMS_SIGN_NAME", "帕创茶铺")
    monkeypatch.setenv("PATRON_ALIYUN_SMS_TEMPLATE_CODES",
                       '{"receipt": "SMS_465300123", "birthday": "SMS_465300124"}')
    settings = ChannelSettings()
    assert settings.aliyun_sms.template_codes == {"receipt": "SMS_465300123",
                                                  "birthday": "SMS_465300124"}
    assert settings.aliyun_sms.access_key_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    channels = build_channels(settings)
    assert isinstance(channels.get(ChannelKind.SMS), AliyunSmsChannel)
    channels.close()


def test_the_env_file_is_read_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PATRON_EMAIL_PROVIDER=smtp\nPATRON_SMTP_HOST=mail.example\n"
                                   "PATRON_SMTP_FROM_ADDRESS=hello@shop.example\n"
                                   "PATRON_SMTP_SECURITY=tls\n", encoding="utf-8")
    settings = ChannelSettings()
    assert (settings.smtp.host, settings.smtp.security) == ("mail.example", "tls")
    channels = build_channels(settings)
    assert isinstance(channels.get(ChannelKind.EMAIL), SmtpChannel)
    channels.close()


@pytest.mark.parametrize(("env", "missing"), [
    ({"PATRON_SMS_PROVIDER": "twilio"}, "PATRON_TWILIO_ACCOUNT_SID"),
    ({"PATRON_SMS_PROVIDER": "twilio", "PATRON_TWILIO_ACCOUNT_SID": "AC1",
      "PATRON_TWILIO_AUTH_TOKEN": "t"}, "PATRON_TWILIO_FROM_NUMBER"),
    ({"PATRON_SMS_PROVIDER": "aliyun", "PATRON_ALIYUN_SMS_ACCESS_KEY_ID": "id",
      "PATRON_ALIYUN_SMS_ACCESS_KEY_SECRET": "s"}, "PATRON_ALIYUN_SMS_SIGN_NAME"),
    ({"PATRON_SMS_PROVIDER": "gateway"}, "PATRON_SMS_GATEWAY_URL"),
    ({"PATRON_EMAIL_PROVIDER": "smtp"}, "PATRON_SMTP_HOST"),
    ({"PATRON_EMAIL_PROVIDER": "smtp", "PATRON_SMTP_HOST": "h", "PATRON_SMTP_FROM_ADDRESS": "a@b.c",
      "PATRON_SMTP_USERNAME": "u"}, "PATRON_SMTP_PASSWORD"),
])
def test_a_provider_without_its_credentials_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=missing):
        ChannelSettings()


def test_each_provider_builds_its_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PATRON_SMS_PROVIDER": "twilio", "PATRON_TWILIO_ACCOUNT_SID": "AC1",
                        "PATRON_TWILIO_AUTH_TOKEN": "t",
                        "PATRON_TWILIO_MESSAGING_SERVICE_SID": "MG1",
                        "PATRON_WEBHOOK_PROVIDER": "http", "PATRON_WEBHOOK_SECRET": "whsec",
                        "PATRON_EMAIL_PROVIDER": "none"}.items():
        monkeypatch.setenv(name, value)
    channels = build_channels(ChannelSettings())
    assert isinstance(channels.get(ChannelKind.SMS), TwilioChannel)
    assert isinstance(channels.get(ChannelKind.WEBHOOK), WebhookChannel)
    assert ChannelKind.EMAIL not in channels
    with pytest.raises(ChannelNotConfigured, match="PATRON_EMAIL_PROVIDER"):
        channels.get(ChannelKind.EMAIL)
    channels.close()
    gateway = build_channels(ChannelSettings(sms_provider="gateway",
                                             sms_gateway={"url": "https://gw.example/sms"}))
    assert isinstance(gateway.get(ChannelKind.SMS), SmsGatewayChannel)
    gateway.close()


def test_http_webhooks_need_a_secret_from_somewhere() -> None:
    with pytest.raises(ValueError, match="PATRON_WEBHOOK_SECRET"):
        build_channels(ChannelSettings(webhook_provider="http"))
    channels = build_channels(ChannelSettings(webhook_provider="http"),
                              webhook_secret=lambda message: "per-endpoint")
    assert isinstance(channels.get(ChannelKind.WEBHOOK), WebhookChannel)
    channels.close()


def test_the_log_channel_writes_one_json_line_per_message(tmp_path: Path,
                                                          clock: FixedClock) -> None:
    path = tmp_path / "log" / "messages.jsonl"
    sms = LogFileChannel(path=path, kind=ChannelKind.SMS, clock=clock)
    email = LogFileChannel(path=path, kind=ChannelKind.EMAIL, clock=clock)
    rendered = preview("receipt", "zh_CN")
    assert sms.send(rendered.sms_message(to="+8613912345678", dedupe_key="m-1")).status is (
        SendStatus.SENT)
    result = email.send(rendered.email(to="li.na@example.com", dedupe_key="m-2"))
    assert result.provider_message_id == "log:m-2"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["dedupe_key"] for line in lines] == ["m-1", "m-2"]
    assert lines[0]["body"].startswith("【帕创茶铺】")
    assert lines[0]["template_params"]["amount"] == "¥180.00"
    assert lines[1]["subject"] == rendered.subject
    assert lines[0]["logged_at"] == clock.now().isoformat()
    assert "李娜" in path.read_text(encoding="utf-8")  # UTF-8, not \\u escapes


def test_threads_sharing_the_log_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    channel = LogFileChannel(path=path, kind=ChannelKind.SMS)

    def send(worker: int) -> None:
        for i in range(50):
            channel.send(Message(kind=ChannelKind.SMS, recipient="+8613912345678",
                                 body="长" * 500, dedupe_key=f"{worker}-{i}"))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200
    assert len({json.loads(line)["dedupe_key"] for line in lines}) == 200


def test_a_rendered_receipt_goes_out_through_aliyun_built_from_settings(
        stub: Callable[[Responder], StubServer], http: httpx.Client,
        clock: FixedClock) -> None:
    """From template to provider: the stand-in verifies the signature independently."""

    def aliyun(request: Recorded) -> Reply:
        params = parse_raw_query(request.query)
        signature = params.pop("Signature")
        assert signature == independent_signature(params, "s3cret")
        assert params["TemplateCode"] == "SMS_465300123"
        assert json.loads(params["TemplateParam"])["amount"] == "¥180.00"
        return Reply.json(200, json.dumps({"Code": "OK", "BizId": "BIZ1"}))

    server = stub(aliyun)
    settings = ChannelSettings(sms_provider="aliyun", aliyun_sms={
        "access_key_id": "LTAI5t", "access_key_secret": "s3cret", "sign_name": "帕创茶铺",
        "endpoint": server.url, "template_codes": {"receipt": "SMS_465300123"}})
    channels = build_channels(settings, client=http, clock=clock)
    message = preview("receipt", "zh_CN").sms_message(to="+8613912345678", dedupe_key="m-9")
    result = channels.get(ChannelKind.SMS).send(message)
    server.check()
    assert (result.status, result.provider_message_id) == (SendStatus.ACCEPTED, "BIZ1")
    channels.close()
    assert not http.is_closed  # an injected client belongs to the caller
